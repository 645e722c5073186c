"""Optional API keys: ``Authorization: Bearer <key>`` on every ``/v1`` request.

Keys are compared in constant time, all of them every time, so neither the time taken nor an
early exit tells a caller how close a guess was. Health checks need no key.
"""

from __future__ import annotations

import hmac

from fastapi import Request

__all__ = ["AuthError", "require_key"]


class AuthError(Exception):
    """A request without a valid API key on a server that has keys."""


def _matches(token: str, keys: list[bytes]) -> bool:
    candidate = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


async def require_key(request: Request) -> None:
    """FastAPI dependency: pass when the server has no keys or the request carries one."""
    keys: list[bytes] = request.app.state.augstream.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("this server needs an API key: send 'Authorization: Bearer <key>'")
    if not _matches(token.strip(), keys):
        raise AuthError("the API key is not valid on this server")

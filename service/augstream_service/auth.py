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


def _match(token: str, keys: list[bytes]) -> int | None:
    """The index of the key equal to ``token``, comparing against every key every time."""
    candidate = token.encode()
    found = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(candidate, key):
            found = index
    return found


async def require_key(request: Request) -> None:
    """FastAPI dependency: pass when the server has no keys or the request carries one, and
    record who asks (``request.state.owner``: the key's number, or the client's address)."""
    keys: list[bytes] = request.app.state.augstream.api_keys
    if not keys:
        request.state.owner = f"address {request.client.host if request.client else '?'}"
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("this server needs an API key: send 'Authorization: Bearer <key>'")
    index = _match(token.strip(), keys)
    if index is None:
        raise AuthError("the API key is not valid on this server")
    request.state.owner = f"key {index}"  # never the key itself: owners appear in logs

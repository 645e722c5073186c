"""Optional API keys, checked before a request's body is read.

With keys, every request needs ``Authorization: Bearer <key>`` except the health check, the
API's reference (``/docs``, ``/openapi.json``: they show no data) and the client's wheel
(``/client/``: code, no data). Keys are compared in constant time, all of them every time, so
neither the time taken nor an early exit tells a caller how close a guess was. The check is
ASGI middleware, ahead of FastAPI's body parsing, so a caller without a key cannot make the
server read a large body; for the same reason the JSON bodies of POST requests (specs of a few
hundred bytes) are capped.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["MAX_JSON_BYTES", "OPEN_PATHS", "OPEN_PREFIXES", "KeyCheck"]

#: Paths anyone may read: liveness, readiness (no names in it), the API reference, and the
#: page (its files hold no data: it asks for a key and sends it with what it fetches).
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
#: Folders anyone may read: the page's files, and the client's wheel (code, no data).
OPEN_PREFIXES = ("/ui/", "/client/")
#: A stream spec is a few hundred bytes; a POST body this large is not one.
MAX_JSON_BYTES = 1 << 20
_BEARER = [(b"www-authenticate", b"Bearer")]


def _match(token: bytes, keys: list[bytes]) -> int | None:
    """The index of the key equal to ``token``, comparing against every key every time."""
    found = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(token, key):
            found = index
    return found


async def _refuse(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"message": message, "detail": message}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": start + (headers or [])}
    )
    await send({"type": "http.response.body", "body": body})


class KeyCheck:
    """ASGI middleware: the key check, the caller's identity for quotas in
    ``scope["state"]["owner"]`` (the key's number, never the key; or the client's address),
    whether the caller may do what only an operator may (``scope["state"]["admin"]``: it
    sent one of ``admin_keys``, or the server has no keys at all), and the POST body cap."""

    def __init__(
        self,
        app: ASGIApp,
        keys: list[bytes],
        on_refuse: Callable[[str], None] | None = None,
        admin_keys: list[bytes] | None = None,
    ) -> None:
        self.app = app
        # Admin keys are keys too; they come last, so the others keep their numbers.
        self.keys = [*keys, *(admin_keys or [])]
        self.first_admin = len(keys)
        #: Told the kind of each refusal (for the error counters).
        self.on_refuse = on_refuse or (lambda kind: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        state = scope.setdefault("state", {})
        if self.keys:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                message = "this server needs an API key: send 'Authorization: Bearer <key>'"
                self.on_refuse("unauthorized")
                await _refuse(send, 401, message, _BEARER)
                return
            index = _match(token.strip(), self.keys)
            if index is None:
                self.on_refuse("unauthorized")
                await _refuse(send, 401, "the API key is not valid on this server", _BEARER)
                return
            state["owner"] = f"key {index}"
            state["admin"] = index >= self.first_admin
        else:
            client = scope.get("client")
            state["owner"] = f"address {client[0] if client else '?'}"
            state["admin"] = True
        if scope["method"] == "POST":
            length = headers.get(b"content-length", b"")
            if not length.isdigit():
                self.on_refuse("body_refused")
                await _refuse(send, 411, "send the spec with a Content-Length header")
                return
            if int(length) > MAX_JSON_BYTES:
                self.on_refuse("body_refused")
                await _refuse(
                    send,
                    413,
                    f"a {int(length)}-byte body is too large for a spec "
                    f"(at most {MAX_JSON_BYTES} bytes)",
                )
                return
        await self.app(scope, receive, send)

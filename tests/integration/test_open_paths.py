"""With API keys, every route of the app needs one except the paths the README names as
open: a route opened by mistake, or added past the check, fails here whatever it is."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

import augstream
from augstream import Client
from augstream_protocol.npy import encode_npy
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

try:  # FastAPI keeps included routers nested since 0.16x; before, ``app.routes`` was flat.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI

    def iter_route_contexts(routes: Any) -> Any:  # type: ignore[misc]
        return iter(routes)


KEY = "the-only-key"
#: What the README says needs no key: liveness, readiness, the page (``/``) and its files
#: ("the page loads without one and asks for it"), the API reference: FastAPI's Swagger
#: UI (``/docs``, with its OAuth2 redirect page), ReDoc and the schema, and the client's
#: wheel with its page (``/client/``: code, no data). ``/metrics`` is not among them ("with
#: keys, ``/metrics`` needs one too").
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/client/",
}
#: Mounted folders anyone may read (and a file in each), and open routes with a parameter
#: (and a path they serve).
OPEN_MOUNTS = {
    "/ui": "/ui/index.html",
    "/client/{filename}": f"/client/augstream-{augstream.__version__}-py3-none-any.whl",
}
SPEC = {"dataset": "pets", "target_size": [8, 8], "batch_size": 4, "epochs": 1}
ARRAY = list(range(12))
PAYLOAD = encode_npy(ARRAY)
#: A valid request of each guarded route, besides its path (whose parameters are filled by
#: name from ``PATH_VALUES``); a route not listed gets an empty JSON body on POST and PUT.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/stream"): {"json": SPEC},
    ("POST", "/v1/files"): {"json": SPEC},
    ("POST", "/v1/stats"): {"json": {"spec": {**SPEC, "featurewise_center": True}}},
    ("GET", "/v1/preview"): {"params": {"spec": json.dumps(SPEC), "rows": 1, "cols": 2}},
    ("PUT", "/v1/arrays/{digest}"): {
        "content": PAYLOAD.header + bytes(PAYLOAD.data),
        "headers": {"Content-Type": "application/octet-stream"},
    },
}
PATH_VALUES = {"name": "pets", "digest": PAYLOAD.digest}


@pytest.fixture(scope="module")
def keyed(image_root: Path) -> Iterator[tuple[str, FastAPI]]:
    """A live server with one API key, serving ``pets``; and its app."""
    app = create_app(Settings(datasets=[image_root], api_keys=[KEY], threads=2))
    with BackgroundServer(app) as server:
        yield server.url, app


def endpoints(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path template)`` the app routes; a mount as ``("MOUNT", path)``."""
    found = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(getattr(route, "original_route", route), Mount):
            found.add(("MOUNT", route.path))
        for method in getattr(route, "methods", None) or ():
            found.add((method, route.path))
    return sorted(found)


def fill(template: str) -> str:
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in PATH_VALUES, f"{template}: give the test a valid {match[0]}"
        return PATH_VALUES[match.group(1)]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, template)


def test_every_route_but_the_documented_open_paths_needs_the_key(
    keyed: tuple[str, FastAPI],
) -> None:
    url, app = keyed
    with Client(url, api_key=KEY) as client:  # so that the routes that read it find it
        assert client.upload(ARRAY) == PAYLOAD.digest
    routes = endpoints(app)
    assert ("POST", "/v1/stream") in routes and ("GET", "/metrics") in routes
    # The open list is the app's own: each documented path is served, and open.
    assert {path for _, path in routes} >= OPEN_PATHS | set(OPEN_MOUNTS)
    guarded = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for method, template in routes:
            if template in OPEN_PATHS or template in OPEN_MOUNTS:
                path = OPEN_MOUNTS.get(template, template)
                response = http.request("GET" if method == "MOUNT" else method, path)
                assert response.status_code == 200, (method, path, response.text[:200])
                continue
            path = fill(template) + ("/" if method == "MOUNT" else "")
            method = "GET" if method == "MOUNT" else method
            extra = dict(REQUESTS.get((method, template), {}))
            if not extra and method in ("POST", "PUT", "PATCH"):
                extra = {"json": {}}
            headers = extra.pop("headers", {})
            refused = http.request(method, path, **extra, headers=headers)
            assert refused.status_code == 401, (method, path, "answered without a key")
            assert refused.headers["www-authenticate"] == "Bearer"
            served = http.request(
                method, path, **extra, headers={**headers, "Authorization": f"Bearer {KEY}"}
            )
            # Its handler answered: the key was taken, and the path and method matched.
            assert served.status_code not in (401, 404, 405), (method, path, served.text[:300])
            assert served.status_code < 500, (method, path, served.text[:300])
            guarded += 1
    assert guarded >= 14

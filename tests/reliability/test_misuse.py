"""Small misuses of a shared server: refreshing a dataset (which sets the shared caches'
entries for it aside) with an ordinary key, a client that gives up in the middle of an
upload, and a name of 60,000 characters."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

pytestmark = pytest.mark.slow

USER, ADMIN = "user-key-0123456789", "admin-key-0123456789"


@pytest.fixture(scope="module")
def keyed(odd_root: Path) -> Iterator[str]:
    settings = Settings(datasets=[odd_root], threads=2, api_keys=[USER], admin_keys=[ADMIN])
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_only_an_admin_key_may_refresh_a_dataset(keyed: str) -> None:
    refresh = f"{keyed}/v1/datasets/odd/refresh"
    refused = httpx.post(refresh, headers=_bearer(USER), timeout=30)
    assert refused.status_code == 403
    assert "admin key" in refused.json()["message"]
    assert httpx.post(refresh, timeout=30).status_code == 401
    done = httpx.post(refresh, headers=_bearer(ADMIN), timeout=30)
    assert done.status_code == 200 and done.json()["samples"] == 117
    # An admin key is a key like the others for everything else.
    assert httpx.get(f"{keyed}/v1/datasets", headers=_bearer(ADMIN)).status_code == 200
    assert httpx.get(f"{keyed}/v1/datasets", headers=_bearer(USER)).status_code == 200


def test_a_long_name_is_echoed_only_in_part(keyed: str) -> None:
    name = "a" * 60_000
    got = httpx.get(f"{keyed}/v1/datasets/{name}", headers=_bearer(USER), timeout=30)
    assert got.status_code == 404
    assert len(got.content) < 1_000
    assert "a" * 100 + "... (60000 characters)" in got.json()["message"]
    assert "'odd'" in got.json()["message"]  # what there is, still said


def test_a_client_leaving_mid_upload_is_logged_as_what_it_is(
    odd_root: Path, caplog: pytest.LogCaptureFixture, counts: dict[str, Any]
) -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    try:
        app = create_app(Settings(datasets=[odd_root], threads=2))
        with BackgroundServer(app) as server:
            digest = "0" * 64
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(
                    f"PUT /v1/arrays/{digest} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 100000\r\n\r\n".encode()
                    + bytes(5000)
                )
                time.sleep(0.3)  # the upload is under way
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _said(caplog, "went away"):
                time.sleep(0.05)
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            errors = app.state.augstream.metrics.error_counts()
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert gone and all(r.levelno == logging.INFO for r in gone)
    assert f"/v1/arrays/{digest}" in gone[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not _said(caplog, " 500 ")
    assert errors.get("client_disconnected") == 1
    counts.update(logged=[r.getMessage()[:80] for r in gone])


def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)

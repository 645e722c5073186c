"""Auth and quotas: 401 for a missing or wrong key on everything but health, 429 for a key
over its stream quota while another key keeps streaming; keys never echoed or logged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from augstream import AuthenticationError, Client
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.cli import _loopback
from tests.reliability.conftest import ServerProcess

pytestmark = pytest.mark.slow


def test_api_keys_guard_everything_but_health(image_root: Path, counts: dict[str, Any]) -> None:
    settings = Settings(datasets=[image_root], api_keys=["first-key", "second-key"])
    with BackgroundServer(create_app(settings)) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "first-key"}):
            for method, path in (
                ("GET", "/v1/datasets"),
                ("POST", "/v1/stream"),
                ("PUT", f"/v1/arrays/{'0' * 64}"),
                ("GET", "/v1/server"),
                ("GET", "/v1/status"),
                ("GET", "/metrics"),
                ("GET", "/v1/preview?dataset=pets"),
            ):
                response = httpx.request(method, server.url + path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "first-key" not in response.text and "second-key" not in response.text
                counts["refused_401"] = counts.get("refused_401", 0) + 1
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "datasets": 1}
        with Client(server.url) as client, pytest.raises(AuthenticationError, match="API key"):
            client.datasets()
        with (
            Client(server.url, api_key="wrong") as client,
            pytest.raises(AuthenticationError, match="not valid"),
        ):
            client.stream(dataset="pets", batch_size=2)
        with Client(server.url, api_key="second-key") as client:
            with client.stream(dataset="pets", target_size=(8, 8), batch_size=4) as stream:
                assert next(stream)[0].shape == (4, 8, 8, 3)
            assert client.upload(np.arange(3))


def test_a_key_over_its_stream_quota_gets_429_while_another_key_streams(
    image_root: Path, counts: dict[str, Any]
) -> None:
    settings = Settings(datasets=[image_root], api_keys=["k1", "k2"], max_streams_per_key=2)
    body = {"dataset": "pets", "target_size": [8, 8], "batch_size": 2}

    def open_stream(http: httpx.Client, key: str) -> httpx.Response:
        request = http.build_request(
            "POST", "/v1/stream", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        return http.send(request, stream=True)

    with (
        BackgroundServer(create_app(settings)) as server,
        # A generous timeout: a loaded CI machine can take seconds to answer a first stream.
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        first = [open_stream(http, "k1") for _ in range(2)]
        assert [r.status_code for r in first] == [200, 200]
        throttled = open_stream(http, "k1")
        throttled.read()
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
        assert "2 streams" in throttled.json()["message"]
        other = open_stream(http, "k2")
        assert other.status_code == 200
        next(other.iter_raw())  # the second key streams while the first is throttled
        other.close()
        first[0].close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server notices the disconnect
            again = open_stream(http, "k1")
            if again.status_code == 200:
                break
            again.read()
            time.sleep(0.05)
        assert again.status_code == 200
        counts.update(quota=2, throttled_429=1, other_key_streamed=True, freed_slot_reused=True)
        for response in (again, first[1]):
            response.close()


def test_keys_never_reach_the_logs(
    odd_root: Path, server_process: type[ServerProcess], tmp_path: Path, counts: dict[str, Any]
) -> None:
    key = "s3cret-Key-that-must-not-leak"
    log = tmp_path / "server.log"
    server = server_process(odd_root, log=log, AUGSTREAM_API_KEYS=f'["{key}"]').start()
    requests = 0
    for headers in ({}, {"Authorization": f"Bearer {key}x"}, {"Authorization": f"Bearer {key}"}):
        for body in ({"dataset": "odd", "batch_size": 2, "epochs": 1}, {"dataset": "nope"}):
            tagged = {**headers, "X-Request-ID": f"job-{requests}"}
            httpx.post(f"{server.url}/v1/stream", json=body, headers=tagged, timeout=30)
            requests += 1
    server.stop()
    text = log.read_text()
    assert "POST /v1/stream" in text  # the log is there and has the requests
    assert key not in text
    # One line per request, tagged with its id: refused ones, and the served stream's.
    lines = [line for line in text.splitlines() if "augstream.request" in line]
    assert any("[job-0]" in line and "POST /v1/stream 401" in line for line in lines)
    assert any("[job-4]" in line and "POST /v1/stream 200" in line for line in lines)
    assert any("[job-5]" in line and "POST /v1/stream 404" in line for line in lines)
    counts.update(requests=requests, log_lines=len(text.splitlines()), key_in_log=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("lab-server", False),
    ],
)
def test_only_loopback_hosts_are_exempt_from_the_no_key_warning(host: str, loopback: bool) -> None:
    assert _loopback(host) is loopback

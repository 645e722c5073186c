"""How long trainers wait for batches reaches the servers, which export it for autoscaling:
in a stream request's header, in ``POST /v1/report``, and from the client by itself."""

from __future__ import annotations

import re
import time

import httpx
import pytest

import augstream._fleet
from augstream import Client
from augstream_protocol.wire import INPUT_WAIT_HEADER


def waited(url: str, dataset: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(rf'augstream_input_wait_seconds_total{{dataset="{dataset}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


SPEC = {"dataset": "pets", "target_size": [8, 8], "batch_size": 4, "epochs": 1, "seed": 1}


def test_a_stream_request_tells_the_wait_in_its_header(server_url: str) -> None:
    before = waited(server_url, "pets")
    headers = {INPUT_WAIT_HEADER: "1.5;12"}
    with httpx.stream(
        "POST", f"{server_url}/v1/stream", json=SPEC, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        response.read()
    assert waited(server_url, "pets") == pytest.approx(before + 1.5)
    # Telemetry never refuses a stream: a header that makes no sense is ignored.
    for nonsense in ("soon", "-3;1", "1;2;3x", "1e9;1"):
        with httpx.stream(
            "POST",
            f"{server_url}/v1/stream",
            json=SPEC,
            headers={INPUT_WAIT_HEADER: nonsense},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            response.read()
    assert waited(server_url, "pets") == pytest.approx(before + 1.5)


def test_a_report_adds_to_the_counter_and_names_only_known_datasets(server_url: str) -> None:
    before = waited(server_url, "pets")
    body = {"dataset": "pets", "waited_s": 2.25, "batches": 3}
    assert httpx.post(f"{server_url}/v1/report", json=body, timeout=30).status_code == 204
    assert waited(server_url, "pets") == pytest.approx(before + 2.25)
    unknown = httpx.post(f"{server_url}/v1/report", json={**body, "dataset": "x"}, timeout=30)
    assert unknown.status_code == 404
    negative = httpx.post(f"{server_url}/v1/report", json={**body, "waited_s": -1}, timeout=30)
    assert negative.status_code == 422 and "waited_s" in negative.text


def test_the_client_reports_what_its_consumer_waited(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(augstream._fleet, "REPORT_EVERY_S", 0.2)
    before = waited(server_url, "pets")
    with Client(server_url) as client, client.stream(**{**SPEC, "epochs": None}) as stream:
        for _ in range(6):
            stream.next_batch(timeout=30)
        deadline = time.monotonic() + 10
        while waited(server_url, "pets") <= before and time.monotonic() < deadline:
            time.sleep(0.1)
    assert waited(server_url, "pets") > before

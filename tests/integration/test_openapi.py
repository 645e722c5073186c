"""The API reference (/docs, /openapi.json) documents every route, with specs to try."""

from __future__ import annotations

import httpx

from augstream import StreamSpec
from tests.conftest import LiveServer


def test_every_route_has_a_summary_and_a_description(live_server: LiveServer) -> None:
    schema = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    operations = [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) >= 14
    for method, path, operation in operations:
        assert operation.get("summary"), (method, path)
        assert len(operation.get("description", "")) > 40, (method, path)
    assert httpx.get(f"{live_server.url}/docs", timeout=30).status_code == 200


def test_the_spec_examples_are_valid_specs_that_stream(live_server: LiveServer) -> None:
    schema = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    for path in ("/v1/stream", "/v1/files"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        examples = body["examples"]
        assert len(examples) >= 3
        for example in examples.values():
            StreamSpec.model_validate(example["value"])
    # The examples name the dataset ``pets``, as the test server does: one really streams.
    example = schema["paths"]["/v1/stream"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]["validation"]["value"]
    listed = httpx.post(f"{live_server.url}/v1/files", json=example, timeout=30)
    assert listed.status_code == 200 and listed.json()["files"]


def test_preview_parameters_are_described(live_server: LiveServer) -> None:
    schema = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    parameters = schema["paths"]["/v1/preview"]["get"]["parameters"]
    described = {p["name"] for p in parameters if p.get("description")}
    assert {"spec", "epoch", "tile"} <= described

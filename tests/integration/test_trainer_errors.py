"""What a trainer sees when something is wrong: every bad spec value is an ``InvalidSpecError``
naming the field, the value and what is allowed, told the same way by the client and by the
server; a server that cannot be reached is an ``augstream.ConnectionError`` naming the URL;
a server of another version is named once, with the command that installs its client."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

import augstream
from augstream import Client, InvalidSpecError, RetryPolicy, StreamSpec
from augstream._http import error_from_response
from augstream._invalid import allowed

#: A bad value for every field of the spec (each alone on top of a valid spec).
BAD: dict[str, Any] = {
    "dataset": "../etc",
    "arrays": {"x": "not-a-digest"},
    "target_size": [20000, 20000],
    "color_mode": "cmyk",
    "classes": [],
    "class_mode": "categorial",
    "batch_size": 0,
    "shuffle": "maybe",
    "seed": -1,
    "interpolation": "bilinaer",
    "keep_aspect_ratio": "perhaps",
    "dtype": "float64",
    "start": [-1, 0],
    "stride": 0,
    "batches": 0,
    "shard": [3, 3],
    "epochs": 0,
    "validation_split": 1.5,
    "subset": "train",
    "rotation_range": 400,
    "width_shift_range": -0.1,
    "height_shift_range": "far",
    "shear_range": 100,
    "zoom_range": 2.0,
    "channel_shift_range": 300,
    "brightness_range": [2, 1],
    "fill_mode": "neareast",
    "cval": 1e7,
    "horizontal_flip": "sometimes",
    "vertical_flip": "often",
    "interpolation_order": 2,
    "rescale": 1e7,
    "samplewise_center": "yes please",
    "samplewise_std_normalization": "no thanks",
    "featurewise_center": "centre",
    "featurewise_std_normalization": 7,
    "zca_whitening": "whiten",
    "stats": {"mean": "not-a-digest"},
    "mask_cval": 300,
    "random_crop_fraction": 0,
    "random_resized_crop_scale": [0.5, 2],
    "random_resized_crop_ratio": [0, 1],
    "erasing_probability": 2,
    "erasing_scale": [0, 0.5],
    "erasing_ratio": [2, 1],
    "erasing_value": 300,
    "contrast_range": [2, 1],
    "saturation_range": [-1, 1],
    "hue_shift_range": 200,
    "grayscale_probability": -1,
    "blur_sigma_range": [0, 60],
    "noise_std_range": [1, 0],
    "jpeg_quality_range": [0, 50],
    "mixup_alpha": -1,
    "cutmix_alpha": 200,
    "compat": "keras_legacy",
}
#: Misspelled choices get the choice meant.
MEANT = {
    "class_mode": "categorical",
    "interpolation": "bilinear",
    "fill_mode": "nearest",
    "subset": "training",
    "compat": "keras-legacy",
}
VALID = {"dataset": "pets", "target_size": [8, 8], "batch_size": 2}


def test_the_table_has_a_bad_value_for_every_field() -> None:
    assert set(BAD) == set(StreamSpec.model_fields)


def _caught_by_the_server(client: Client, body: dict[str, Any]) -> InvalidSpecError:
    # Sent as it is, past the client's own validation: the server's 422 as the client reads it.
    response = client._http.post("/v1/files", json=body)
    assert response.status_code == 422, response.text
    error = error_from_response(response)
    assert isinstance(error, InvalidSpecError)
    return error


@pytest.mark.parametrize("field", sorted(BAD))
def test_a_bad_value_is_named_alike_by_client_and_server(server_url: str, field: str) -> None:
    body = {**VALID, field: BAD[field]}
    with Client(server_url) as client:
        with pytest.raises(InvalidSpecError) as caught:
            client.files(**body)
        mine = caught.value
        theirs = _caught_by_the_server(client, body)
    for error in (mine, theirs):
        message = str(error)
        assert field in error.fields, message
        assert message.startswith(f"invalid stream spec: {field}: "), message
        assert "got " in message or repr(BAD[field]) in message, message
        if field in MEANT:
            assert f"did you mean {MEANT[field]!r}?" in message, message
        # What is allowed: the choices (pydantic lists them), the type and range, or what a
        # field's own check expected.
        choices = (allowed(field) or "").startswith("one of ")
        said = ("Input should be ",) if choices else ("allowed: ", "expected ", "must be ")
        assert any(words in message for words in said), message
        assert isinstance(error, ValueError)
    assert (mine.caught_by, theirs.caught_by) == ("client", "server")
    assert "caught by the client, before any request" in str(mine)
    assert "caught by the server (HTTP 422 from " in str(theirs)
    # One format from both sides: the same words up to where it was caught.
    assert str(mine).split("; caught by")[0] == str(theirs).split("; caught by")[0]


def test_a_misspelled_field_or_keyword_gets_a_did_you_mean(server_url: str) -> None:
    with Client(server_url) as client:
        meant = r"batchsize: not a field of the spec - did you mean 'batch_size'\?"
        with pytest.raises(InvalidSpecError, match=meant):
            client.stream(dataset="pets", batchsize=4)
        theirs = _caught_by_the_server(client, {**VALID, "rotation_rnage": 10})
    assert "rotation_rnage: not a field of the spec - did you mean 'rotation_range'?" in str(theirs)
    with pytest.raises(InvalidSpecError, match="did you mean 'rotation_range'") as caught:
        augstream.ImageDataGenerator(server=server_url, rotation_rnage=10)
    assert isinstance(caught.value, TypeError)  # what Python raises for a bad keyword


def test_the_front_end_refuses_bad_values_at_construction(server_url: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"zoom_range: expected \[lower, upper\]"):
        augstream.ImageDataGenerator(server=server_url, zoom_range=[2, 1])
    with pytest.raises(InvalidSpecError, match=r"rotation_range: .*\(got 400; allowed: "):
        augstream.ImageDataGenerator(server=server_url, rotation_range=400)
    with pytest.raises(InvalidSpecError, match="did you mean 'nearest'"):
        augstream.ImageDataGenerator(server=server_url, fill_mode="neareast")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9", "connection refused"),
        ("http://no-such-host.invalid:8080", "unknown host"),
    ],
)
def test_an_unreachable_server_is_an_augstream_connection_error(url: str, reason: str) -> None:
    with Client(url, retry=RetryPolicy(attempts=1, backoff_s=0.01)) as client:
        for call in (client.datasets, lambda: client.files(**VALID)):
            with pytest.raises(augstream.ConnectionError) as caught:
                call()
            assert (caught.value.url, caught.value.reason) == (url, reason)
            assert f"cannot reach the augstream server at {url} ({reason}" in str(caught.value)
            assert isinstance(caught.value, ConnectionError)  # the built-in, too
            assert caught.value.__cause__ is None and caught.value.__suppress_context__
        with pytest.raises(augstream.ConnectionLostError, match=f"at {url} \\({reason}"):
            client.stream(**VALID)


def test_a_server_of_another_version_is_named_once(
    server_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served = httpx.get(f"{server_url}/healthz")
    version = served.headers["augstream-version"]
    assert version == augstream.__version__ and served.headers["augstream-protocol"] == "1"
    monkeypatch.setattr("augstream._http._client_version", lambda: "0.0.1")
    monkeypatch.setattr("augstream._http._warned", set())
    with caplog.at_level(logging.WARNING, logger="augstream"), Client(server_url) as client:
        client.datasets()
        client.files(**VALID)
        with client.stream(**VALID) as stream:
            stream.next_batch()
    lines = [r.getMessage() for r in caplog.records if "runs augstream" in r.getMessage()]
    wheel = f"{server_url}/client/augstream-{version}-py3-none-any.whl"
    assert lines == [
        f"augstream: the server at {server_url} runs augstream {version}, this client 0.0.1; "
        f'install the server\'s own client: pip install "augstream[keras] @ {wheel}"'
    ]
    assert httpx.get(wheel).status_code == 200

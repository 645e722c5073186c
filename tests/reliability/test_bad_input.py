"""Bad input: corrupt images follow their dataset's policy with exact counts, pixel bombs and
oversized files are refused before decoding, no name reaches outside the dataset roots, and a
property-based fuzzer over the API finds no 5xx."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augstream import Client, InvalidSpecError, ServerError
from augstream_protocol.spec import StreamSpec
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.imagefolder import make_image_folder, png_header

pytestmark = pytest.mark.slow


def _spoil(root: Path) -> dict[str, str]:
    """Spoil five files of ``root`` in five ways; return file -> what is wrong."""
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "cat" / "004.png"), noise)  # ~480 kB, over the 200 kB limit
    cut = root / "cat" / "001.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (root / "dog" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    (root / "fox" / "002.PNG").write_bytes(b"")
    (root / "fox" / "003.png").write_bytes(png_header(100_000, 100_000) + bytes(64))
    return {
        "cat/001.jpg": "truncated JPEG",
        "cat/004.png": "larger than the limit of 200000 bytes",
        "dog/000.png": "not a decodable image",
        "fox/002.PNG": "the file is empty",
        "fox/003.png": "100000x100000 = 10000000000 pixels",
    }


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    base = tmp_path_factory.mktemp("bad")
    wrong: dict[str, str] = {}
    for name in ("lenient", "strict"):
        wrong = _spoil(make_image_folder(base / name, per_class=(5, 5, 5)))
    # A sibling sharing the prefix and a symlink leading into it: neither may be reached.
    secret = make_image_folder(base / "lenient-secret", per_class=(1,))
    os.symlink(secret / "cat", base / "lenient" / "dog" / "escape")
    settings = Settings(
        datasets=[base / "lenient", base / "strict"],
        on_corrupt_by_dataset={"lenient": "skip"},
        max_file_bytes=200_000,
    )
    with BackgroundServer(create_app(settings)) as server:
        yield server.url, wrong


def test_skip_policy_leaves_out_exactly_the_corrupt_images(
    bad: tuple[str, dict[str, str]], counts: dict[str, Any]
) -> None:
    url, wrong = bad
    spec = dict(dataset="lenient", target_size=(16, 16), batch_size=4, epochs=2, seed=3)
    with Client(url) as client, client.stream(**spec) as stream:
        listing = client.files(dataset="lenient")
        got = [stream.next_batch(timeout=60) for _ in range(2 * len(stream))]
    assert not any("escape" in f for f in listing.files)  # the symlink is not followed
    for epoch in (0, 1):
        delivered = [i for b in got if b.epoch == epoch for i in b.sample_ids]
        skipped = {i: why for b in got if b.epoch == epoch for i, why in b.skipped}
        assert sorted(delivered + list(skipped)) == list(range(len(listing.files)))
        assert {listing.files[i] for i in skipped} == set(wrong)
        for i, why in skipped.items():
            assert listing.files[i] in why and wrong[listing.files[i]] in why
    for batch in got:
        assert batch.y is not None
        assert len(batch.x) == len(batch.sample_ids) == len(batch.y)
    with Client(url) as client:
        assert client.server_info().skipped_samples["lenient"] >= 2 * len(wrong)
    counts.update(samples=len(listing.files), skipped_per_epoch=len(wrong), epochs=2)


def test_error_policy_stops_at_the_first_corrupt_image_named(
    bad: tuple[str, dict[str, str]],
) -> None:
    url, _ = bad
    spec = dict(dataset="strict", target_size=(16, 16), batch_size=4, shuffle=False)
    with (
        Client(url) as client,
        client.stream(**spec) as stream,
        pytest.raises(ServerError) as raised,
    ):
        for _ in range(10):
            stream.next_batch(timeout=60)
    assert raised.value.kind == "sample_error"
    assert "strict/cat/001.jpg" in str(raised.value) and "truncated JPEG" in str(raised.value)
    assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("name", "refused_by_name"),
    [
        ("../strict/cat/000.png", True),
        ("/etc/passwd", True),
        ("cat/000.png\x00.jpg", True),
        ("../lenient-secret/cat/000.png", True),
        ("cat\\..\\..\\x.png", True),
        ("..%2fstrict/cat/000.png", False),  # not traversal: a missing file
        ("dog/escape/000.png", False),  # a symlink out of the dataset: refused when read
    ],
)
def test_no_file_name_reaches_outside_the_dataset(
    bad: tuple[str, dict[str, str]], name: str, refused_by_name: bool
) -> None:
    url, _ = bad
    spec = dict(
        dataset="lenient",
        class_mode="none",
        target_size=(8, 8),
        batch_size=2,
        shuffle=False,
        epochs=1,
    )
    with Client(url) as client:
        refs = {"filenames": client.upload(np.asarray(["cat/000.png", name]))}
        if refused_by_name:
            with pytest.raises(InvalidSpecError, match=r"arrays\.filenames.*row 1"):
                client.stream(arrays=refs, **spec)
            return
        with client.stream(arrays=refs, **spec) as stream:
            batch = stream.next_batch(timeout=60)
    # Skipped under this dataset's policy; never read from outside the root.
    assert batch.sample_ids == [0]
    assert [i for i, _ in batch.skipped] == [1]
    assert "lenient-secret" not in batch.skipped[0][1]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = sorted(StreamSpec.model_fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dataset=st.sampled_from([None, "lenient", "strict", "nope"]),
    extra=st.dictionaries(st.sampled_from([*FIELDS, "bogus"]), JSON, max_size=5),
    route=st.sampled_from(["/v1/stream", "/v1/files"]),
)
def test_fuzzed_requests_never_get_a_5xx(
    bad: tuple[str, dict[str, str]], dataset: str | None, extra: dict[str, Any], route: str
) -> None:
    url, _ = bad
    body = {"dataset": dataset, **extra} if dataset else extra
    content = json.dumps(body)  # NaN and Infinity included: Python's JSON writes them
    headers = {"content-type": "application/json"}
    with httpx.stream("POST", url + route, content=content, timeout=30, headers=headers) as got:
        assert got.status_code < 500, (body, got.read())
        if got.status_code == 200 and route == "/v1/stream":
            next(got.iter_raw())  # the stream started; drop it

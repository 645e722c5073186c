"""Wire protocol v1: frames survive any chunking, and damaged or hostile bytes are refused."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from augstream._exceptions import ProtocolError, TruncatedError
from augstream_protocol.wire import (
    ROW_CRCS,
    BatchFrame,
    Frame,
    FrameDecoder,
    FrameKind,
    crc32,
    decode_batch,
    encode_batch,
    encode_json_frame,
)

PREFIX_SIZE = 9  # length (4) + kind (1) + CRC-32 (4)


def batch_bytes(
    arrays: Mapping[str, np.ndarray[Any, Any]],
    epoch: int = 0,
    batch: int = 0,
    ids: list[int] | None = None,
) -> bytes:
    ids = list(range(len(next(iter(arrays.values()))))) if ids is None else ids
    return b"".join(encode_batch(epoch, batch, ids, arrays))


def decode_one(data: bytes) -> Frame:
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    decoder.close()
    assert len(frames) == 1
    return frames[0]


def round_trip(arrays: Mapping[str, np.ndarray[Any, Any]], **kw: Any) -> BatchFrame:
    frame = decode_one(batch_bytes(arrays, **kw))
    assert frame.kind is FrameKind.BATCH
    return decode_batch(frame.body)


def assert_same_array(got: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    # Bytes, not values: NaN, -0.0 and byte order must come through unchanged.
    assert got.tobytes() == np.ascontiguousarray(expected).tobytes()


def tiny_batch(epoch: int, batch: int) -> bytes:
    x = np.arange(2 * 2 * 2 * 1, dtype=np.uint8).reshape(2, 2, 2, 1) + batch
    y = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    return batch_bytes({"x": x, "y": y}, epoch=epoch, batch=batch, ids=[batch * 2, batch * 2 + 1])


def sample_stream() -> list[bytes]:
    """A small but complete stream, one entry per frame."""
    return [
        encode_json_frame(FrameKind.HEADER, {"version": 1, "classes": ["cat", "dog"]}),
        tiny_batch(0, 0),
        encode_json_frame(FrameKind.HEARTBEAT),
        tiny_batch(0, 1),
        encode_json_frame(FrameKind.END, {"batches": 2}),
    ]


def npy_blob(descr: str, shape: tuple[int, ...], data: bytes, fortran: bool = False) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def batch_body(blobs: Mapping[str, bytes]) -> bytes:
    """A batch frame body built by hand, so its arrays can say anything."""
    meta = {
        "epoch": 0,
        "batch": 0,
        "ids": [0],
        "arrays": [{"name": name, "nbytes": len(blob)} for name, blob in blobs.items()],
    }
    encoded = json.dumps(meta).encode()
    return struct.pack(">I", len(encoded)) + encoded + b"".join(blobs.values())


# --- JSON frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (FrameKind.HEADER, {"version": 1, "classes": ["chat", "café", "犬"], "shape": [2, 3]}),
        (FrameKind.END, {"epochs": 3, "batches": 12}),
        (FrameKind.ERROR, {"kind": "decode_error", "message": "bad PNG", "status": 500}),
        (FrameKind.HEARTBEAT, {}),
        (FrameKind.GOAWAY, {"next": [2, 17], "reason": "the server is shutting down"}),
    ],
)
def test_json_frame_round_trips(kind: FrameKind, payload: dict[str, Any]) -> None:
    frame = decode_one(encode_json_frame(kind, payload))
    assert frame.kind is kind
    assert frame.json() == payload


def test_json_frame_without_payload_is_an_empty_object() -> None:
    assert decode_one(encode_json_frame(FrameKind.END)).json() == {}


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_json_of_a_body_that_is_not_a_json_object_raises(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="ERROR"):
        Frame(FrameKind.ERROR, body).json()


# --- batch frames ------------------------------------------------------------------------


def test_batch_round_trip_keeps_position_ids_arrays_and_dtypes() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    y = np.array([[1.5, np.nan], [-0.0, np.inf], [-np.inf, 1e-40]], dtype=np.float32)
    decoded = round_trip({"x": x, "y": y}, epoch=7, batch=41, ids=[10, 2, 999_999_999_999])
    assert (decoded.epoch, decoded.batch) == (7, 41)
    assert decoded.sample_ids == [10, 2, 999_999_999_999]
    assert list(decoded.arrays) == ["x", "y"]
    assert_same_array(decoded.arrays["x"], x)
    assert_same_array(decoded.arrays["y"], y)


@pytest.mark.parametrize(
    "array",
    [
        np.asfortranarray(np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)),
        np.arange(4 * 6 * 6 * 3, dtype=np.uint8).reshape(4, 6, 6, 3)[::2, :, 1::2],
        np.arange(24, dtype=np.float32).reshape(4, 6).T,
        np.arange(10, dtype=np.float32)[::-1],
    ],
    ids=["fortran", "strided", "transposed", "reversed"],
)
def test_non_contiguous_arrays_arrive_with_the_same_values(array: np.ndarray[Any, Any]) -> None:
    assert not array.flags.c_contiguous
    assert_same_array(round_trip({"x": array}).arrays["x"], array)


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float16", "int64", ">i4", "bool"])
def test_other_dtypes_round_trip_exactly(dtype: str) -> None:
    array = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    assert_same_array(round_trip({"y": array}).arrays["y"], array)


def test_zero_length_batch_round_trips() -> None:
    x = np.zeros((0, 8, 8, 3), dtype=np.uint8)
    y = np.zeros((0, 5), dtype=np.float32)
    decoded = round_trip({"x": x, "y": y}, ids=[])
    assert decoded.sample_ids == []
    assert_same_array(decoded.arrays["x"], x)
    assert_same_array(decoded.arrays["y"], y)


def test_decoded_arrays_are_writable_views_of_the_frame() -> None:
    """Users normalise batches in place (x /= 255, preprocess_input); no copy is made."""
    decoded = round_trip({"x": np.ones((2, 2, 2, 1), dtype=np.uint8)})
    decoded.arrays["x"][0, 0, 0, 0] = 5
    assert decoded.arrays["x"][0, 0, 0, 0] == 5
    # Decoding a read-only body gives read-only arrays rather than silently copying.
    body = bytes(batch_bytes({"x": np.ones((1, 1, 1, 1), dtype=np.uint8)})[9:])
    assert not decode_batch(body).arrays["x"].flags.writeable


@pytest.mark.parametrize(
    "array",
    [np.array([1, None, "a"], dtype=object), np.zeros(2, dtype=[("a", np.int32), ("b", object)])],
    ids=["object", "struct-with-object"],
)
def test_encoder_refuses_object_dtypes(array: np.ndarray[Any, Any]) -> None:
    with pytest.raises(TypeError, match="'labels'"):
        encode_batch(0, 0, [0, 1], {"labels": array})


# --- incremental decoding ----------------------------------------------------------------


def test_feeding_one_byte_at_a_time_gives_the_same_frames_as_feeding_whole() -> None:
    data = b"".join(sample_stream())
    whole = FrameDecoder().feed(data)
    assert [f.kind for f in whole] == [
        FrameKind.HEADER,
        FrameKind.BATCH,
        FrameKind.HEARTBEAT,
        FrameKind.BATCH,
        FrameKind.END,
    ]
    decoder = FrameDecoder()
    trickled: list[Frame] = []
    for i in range(len(data)):
        trickled += decoder.feed(data[i : i + 1])
    assert trickled == whole
    assert decoder.pending == 0
    decoder.close()
    assert decode_batch(trickled[3].body).sample_ids == [2, 3]


def test_frames_come_out_as_soon_as_their_last_byte_arrives() -> None:
    frames = sample_stream()
    decoder = FrameDecoder()
    for frame in frames:
        assert decoder.feed(frame[:-1]) == []
        assert decoder.pending == len(frame) - 1
        assert len(decoder.feed(frame[-1:])) == 1
        assert decoder.pending == 0


def test_stream_cut_anywhere_inside_its_last_frame_is_truncated() -> None:
    frames = sample_stream()
    frames[-1] = tiny_batch(1, 0)
    data = b"".join(frames)
    last_start = len(data) - len(frames[-1])
    for cut in range(last_start + 1, len(data)):
        decoder = FrameDecoder()
        assert len(decoder.feed(data[:cut])) == len(frames) - 1, cut
        with pytest.raises(TruncatedError):
            decoder.close()


def test_close_raises_exactly_when_the_cut_is_not_on_a_frame_boundary() -> None:
    frames = sample_stream()
    data = b"".join(frames)
    boundaries = {0}
    for frame in frames:
        boundaries.add(max(boundaries) + len(frame))
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        decoder.feed(data[:cut])
        if cut in boundaries:
            decoder.close()
        else:
            with pytest.raises(TruncatedError):
                decoder.close()


# --- the CRC of rows checksummed by whoever wrote them ----------------------------------


def _rows(array: np.ndarray[Any, Any]) -> list[int]:
    return [crc32(np.ascontiguousarray(row)) for row in array]


@pytest.mark.skipif(not ROW_CRCS, reason="needs zlib-ng's crc32_combine")
@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(3).integers(0, 256, (7, 9, 5, 3), dtype=np.uint8),
        np.random.default_rng(4).random((3, 4, 2, 1), dtype=np.float32),
        np.random.default_rng(5).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
        np.zeros((4, 0, 3, 3), dtype=np.uint8),  # rows of no bytes
    ],
    ids=["uint8", "float32", "one-large-row", "empty-rows"],
)
def test_a_frame_from_its_rows_crcs_is_the_frame_read_whole(x: np.ndarray[Any, Any]) -> None:
    arrays = {"x": x, "y": np.arange(len(x), dtype=np.int64)}
    ids = list(range(len(x)))
    whole = encode_batch(3, 1, ids, arrays, [(9, "bad")])
    combined = encode_batch(3, 1, ids, arrays, [(9, "bad")], row_crcs={"x": _rows(x)})
    assert [bytes(part) for part in combined] == [bytes(part) for part in whole]


@pytest.mark.skipif(not ROW_CRCS, reason="needs zlib-ng's crc32_combine")
def test_rows_crcs_are_taken_as_given_so_a_wrong_one_fails_at_the_receiver() -> None:
    x = np.random.default_rng(6).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    wrong = _rows(x)
    wrong[2] ^= 1
    data = b"".join(encode_batch(0, 0, [0, 1, 2, 3], {"x": x}, row_crcs={"x": wrong}))
    with pytest.raises(ProtocolError, match="CRC"):
        FrameDecoder().feed(data)


def test_rows_crcs_that_do_not_match_the_rows_are_ignored() -> None:
    x = np.random.default_rng(7).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    whole = b"".join(encode_batch(0, 0, [0, 1, 2, 3], {"x": x}))
    # Three CRCs for four rows, and CRCs of an array the batch does not have.
    given = {"x": _rows(x)[:3], "z": [1, 2]}
    assert b"".join(encode_batch(0, 0, [0, 1, 2, 3], {"x": x}, row_crcs=given)) == whole


# --- damaged and hostile input -----------------------------------------------------------


@pytest.mark.parametrize("which", [0, 1, 4], ids=["header", "batch", "end"])
@pytest.mark.parametrize("where", [0, 0.5, -1], ids=["first", "middle", "last"])
def test_a_flipped_body_byte_fails_the_crc(which: int, where: float) -> None:
    data = bytearray(sample_stream()[which])
    body_len = len(data) - PREFIX_SIZE
    offset = PREFIX_SIZE + (int(body_len * where) if where >= 0 else body_len - 1)
    data[offset] ^= 0x01
    with pytest.raises(ProtocolError, match="CRC"):
        FrameDecoder().feed(bytes(data))


def test_a_flipped_checksum_byte_fails_the_crc() -> None:
    data = bytearray(encode_json_frame(FrameKind.END, {"ok": True}))
    data[8] ^= 0x80
    with pytest.raises(ProtocolError, match="CRC"):
        FrameDecoder().feed(bytes(data))


@pytest.mark.parametrize("kind", [0, 7, 255])
def test_unknown_frame_kind_raises(kind: int) -> None:
    data = bytearray(encode_json_frame(FrameKind.END))
    data[4] = kind
    with pytest.raises(ProtocolError, match=f"kind {kind}"):
        FrameDecoder().feed(bytes(data[:PREFIX_SIZE]))


def test_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    prefix = struct.pack(">IBI", 1001, FrameKind.BATCH, 0)
    with pytest.raises(ProtocolError, match="1001"):
        FrameDecoder(max_frame_bytes=1000).feed(prefix)


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    data = encode_json_frame(FrameKind.HEADER, {"pad": "x" * 100})
    decoder = FrameDecoder(max_frame_bytes=len(data) - PREFIX_SIZE)
    assert decoder.feed(data) == [Frame(FrameKind.HEADER, data[PREFIX_SIZE:])]
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder(max_frame_bytes=len(data) - PREFIX_SIZE - 1).feed(data)


@pytest.mark.parametrize(
    ("descr", "shape", "data"),
    [
        ("|u1", (2, 4), bytes(6)),  # claims more elements than it carries
        ("|u1", (2, 2), bytes(6)),  # claims fewer
        ("<f4", (2, 3), bytes(6)),  # claims a wider dtype
        ("|u1", (7,), bytes(6)),
        ("|u1", (), bytes(6)),
        ("|u1", (-1, 6), bytes(6)),
        ("|u1", (3,), b""),
        ("|u1", (2**32, 2**32), b""),  # the element count must not wrap around to 0
        ("|u1", (0, 2**70), b""),
        ("|u1", (-1, 0), b""),
        ("|V0", (6,), b""),
    ],
)
def test_npy_header_that_lies_about_its_array_raises(
    descr: str, shape: tuple[int, ...], data: bytes
) -> None:
    body = batch_body({"x": npy_blob(descr, shape, data)})
    with pytest.raises(ProtocolError, match="'x'"):
        decode_batch(body)


def test_honest_hand_built_body_decodes() -> None:
    """Keeps the lying-header cases honest: the same builder with a true shape decodes."""
    decoded = decode_batch(batch_body({"x": npy_blob("|u1", (2, 3), bytes(range(6)))}))
    np.testing.assert_array_equal(decoded.arrays["x"], [[0, 1, 2], [3, 4, 5]])


def test_fortran_ordered_blob_decodes_in_fortran_order() -> None:
    decoded = decode_batch(batch_body({"x": npy_blob("|u1", (2, 3), bytes(range(6)), True)}))
    np.testing.assert_array_equal(decoded.arrays["x"], [[0, 2, 4], [1, 3, 5]])


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00",
        struct.pack(">I", 500) + b"{}",
        struct.pack(">I", 2) + b"{}",
        struct.pack(">I", 9) + b"not json!",
        batch_body({"x": b"not an npy blob at all"}),
        batch_body({"x": npy_blob("|O", (1,), bytes(8))}),
        batch_body({"x": npy_blob("|u1", (2,), bytes(2))}) + b"extra",
    ],
    ids=[
        "short",
        "meta-past-end",
        "meta-missing-keys",
        "meta-not-json",
        "not-npy",
        "object",
        "tail",
    ],
)
def test_malformed_batch_body_raises_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_batch(body)


def test_array_running_past_the_end_of_the_frame_raises() -> None:
    body = batch_body({"x": npy_blob("|u1", (4,), bytes(4))})
    with pytest.raises(ProtocolError, match="past the end"):
        decode_batch(body[:-1])

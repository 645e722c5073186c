"""``.npy`` headers: read exactly as numpy writes them, strictly, and without ``ast``."""

from __future__ import annotations

import ast
import io
import struct
from typing import Any

import numpy as np
import pytest

from augstream_protocol.npy import npy_header, parse_npy_header
from augstream_protocol.wire import decode_batch, encode_batch

ARRAYS = [
    np.zeros((16, 64, 64, 3), np.uint8),
    np.zeros((), np.float32),
    np.zeros(3, "<U7"),
    np.asfortranarray(np.zeros((2, 3))),
    np.zeros((0, 5), bool),
    np.zeros(4, ">i8"),
    np.zeros((1,) * 8, np.float16),
]


def saved(array: np.ndarray[Any, Any], version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def hand_made(text: str, version: int = 1) -> bytes:
    field = "<H" if version == 1 else "<I"
    body = text.encode()
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(field, len(body)) + body


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_headers_numpy_writes_read_back_as_numpy_reads_them(array: np.ndarray[Any, Any]) -> None:
    blob = saved(array)
    stream = io.BytesIO(blob)
    np.lib.format.read_magic(stream)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    header = parse_npy_header(blob)
    assert (header.shape, header.fortran_order, header.dtype) == (shape, fortran, dtype)
    assert header.offset == stream.tell() == len(npy_header(np.ascontiguousarray(array)))


@pytest.mark.parametrize(
    "array",
    [*ARRAYS, np.zeros((3, 4))[:, ::2], np.zeros(2, [("a", "<i4"), ("b", "<f8")])],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_a_header_is_the_one_numpy_writes_also_when_made_before(
    array: np.ndarray[Any, Any],
) -> None:
    # The second header of the same dtype, shape and order comes from the cache.
    blob = saved(array)
    stream = io.BytesIO(blob)
    np.lib.format.read_magic(stream)
    np.lib.format.read_array_header_1_0(stream)
    for _ in range(2):
        assert npy_header(array) == blob[: stream.tell()]


def test_version_two_headers_read_where_allowed() -> None:
    blob = saved(np.zeros((2, 3), np.int32), version=(2, 0))
    assert parse_npy_header(blob, versions=(1, 2)).shape == (2, 3)
    with pytest.raises(ValueError, match="version"):
        parse_npy_header(blob)


def test_key_order_and_spacing_do_not_matter() -> None:
    header = parse_npy_header(
        hand_made("{ 'shape' : ( 2 , 3 ) ,'fortran_order':True,  'descr': '<i2' }\n")
    )
    assert (header.shape, header.fortran_order, header.dtype) == ((2, 3), True, np.int16)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "magic"),
        (b"\x93NUMPX\x01\x00", "magic"),
        (b"\x93NUMPY\x01\x00\x40", "cut short"),
        (hand_made("{'descr': '<u1', 'fortran_order': False, 'shape': (3,), }")[:-4], "cut short"),
        (hand_made("{'descr': '<u1', 'fortran_order': False}"), "keys"),
        (hand_made("{'descr': '<u1', 'fortran_order': False, 'shape': (3,), 'x': (1,)}"), "keys"),
        (hand_made("{'descr': '<u1', 'descr': '<u1', 'shape': (3,)}"), "repeats"),
        (hand_made("{'descr': '<u1', 'fortran_order': 0, 'shape': (3,)}"), "cannot be read"),
        (hand_made("{'descr': '<u1', 'fortran_order': False, 'shape': [3]}"), "cannot be read"),
        (hand_made("{'descr': (3,), 'fortran_order': False, 'shape': (3,)}"), "wrong kinds"),
        (hand_made("{'descr': 'nonsense', 'fortran_order': False, 'shape': (3,)}"), "dtype"),
        (hand_made("['descr', '<u1']"), "not a dictionary"),
        (hand_made("{'descr': __import__('os'), 'fortran_order': False, 'shape': ()}"), "read"),
        (hand_made("{'descr': '<u1', 'fortran_order': False, 'shape': (3,)}", 4), "version"),
    ],
)
def test_headers_not_in_numpys_form_are_refused(blob: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_npy_header(blob)


def test_batches_decode_without_ast(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's reader uses ``ast.literal_eval``, which is not thread-safe on Python 3.11; a
    client decoding in many threads failed with "AST constructor recursion depth mismatch"."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ast used to read a .npy header")

    monkeypatch.setattr(ast, "literal_eval", refuse)
    monkeypatch.setattr(ast, "parse", refuse)
    arrays = {"x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "y": np.eye(2)}
    decoded = decode_batch(b"".join(encode_batch(0, 0, [0, 1], arrays))[9:])
    for name, array in arrays.items():
        np.testing.assert_array_equal(decoded.arrays[name], array)

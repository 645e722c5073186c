"""A stream's large pieces skip h11's join (``directbody``) and the bytes on the wire stay
what h11 would have written: the chunked body, decoded strictly, is the very body an
HTTP/1.0 request gets (close-delimited, every piece through h11), and an HTTP/1.1 stream
sends no piece of ``DIRECT_MIN`` bytes or more through h11."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import h11
import pytest

from augstream_service.directbody import DIRECT_MIN

#: 5 batches of 16 images at 64 x 64, float32: 786 KiB frames, split into pieces.
SPEC = dict(
    dataset="pets", target_size=(64, 64), batch_size=16, seed=2, batches=5, rotation_range=20
)


def _request(url: str, version: str) -> bytes:
    """The whole response to a stream request (the stream is finite: the server closes or
    ends it)."""
    parsed = urlparse(url)
    assert parsed.port is not None
    body = json.dumps(SPEC).encode()
    head = (
        f"POST /v1/stream HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", parsed.port), timeout=60) as sock:
        sock.sendall(head.encode() + body)
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
    return bytes(received)


def _dechunk(raw: bytes) -> Iterator[bytes]:
    """The chunks of a chunked body, checked to the letter (sizes, CRLFs, the last chunk)."""
    at = 0
    while True:
        line_end = raw.index(b"\r\n", at)
        size = int(raw[at:line_end], 16)
        start = line_end + 2
        if size == 0:
            assert raw[start:] == b"\r\n", "no trailers, one CRLF after the last chunk"
            return
        assert raw[start + size : start + size + 2] == b"\r\n", f"chunk at {at}: no CRLF"
        yield raw[start : start + size]
        at = start + size + 2


@pytest.fixture
def h11_data_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the body pieces that went through h11 (this process's server)."""
    sizes: list[int] = []
    send = h11.Connection.send

    def counted(self: h11.Connection, event: Any) -> bytes | None:
        if isinstance(event, h11.Data):
            sizes.append(len(event.data))
        return send(self, event)

    monkeypatch.setattr(h11.Connection, "send", counted)
    return sizes


def test_chunked_pieces_bypass_h11_and_keep_its_bytes(
    server_url: str, h11_data_sizes: list[int]
) -> None:
    chunked = _request(server_url, "1.1")
    head, _, body = chunked.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    pieces = list(_dechunk(body))
    assert max(map(len, pieces)) >= DIRECT_MIN  # pieces large enough to go direct
    assert all(size < DIRECT_MIN for size in h11_data_sizes), h11_data_sizes
    h11_data_sizes.clear()

    plain = _request(server_url, "1.0")
    plain_head, _, plain_body = plain.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in plain_head.lower()
    assert any(size >= DIRECT_MIN for size in h11_data_sizes)  # HTTP/1.0: through h11
    assert b"".join(pieces) == plain_body

"""A stream's large pieces skip h11's join (``directbody``) and the bytes on the wire stay
what h11 would have written: the chunked body, decoded strictly, is the very body an
HTTP/1.0 request gets (close-delimited, every piece through h11), and an HTTP/1.1 stream
sends no piece of ``DIRECT_MIN`` bytes or more through h11."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import h11
import pytest

from augstream_protocol.wire import FrameKind
from augstream_service.directbody import DIRECT_MIN, DirectBody
from augstream_service.producer import LOOPBACK_PIECE

#: 5 batches of 16 images at 64 x 64, float32: 786 KiB frames, split into pieces.
SPEC = dict(
    dataset="pets", target_size=(64, 64), batch_size=16, seed=2, batches=5, rotation_range=20
)

#: 3 batches of 15 MiB (the 19 images of pets at 512 x 512): more than a loopback socket's
#: buffers hold.
LARGE = {**SPEC, "target_size": (512, 512), "batch_size": 32, "batches": 3}


def _request(url: str, version: str, slow: bool = False, spec: dict[str, Any] = SPEC) -> bytes:
    """The whole response to a stream request (the stream is finite: the server closes or
    ends it); ``slow``: read by a small receive buffer, 16 KiB at a time, so the server's
    socket fills and its pieces wait for room."""
    parsed = urlparse(url)
    assert parsed.port is not None
    body = json.dumps(spec).encode()
    head = (
        f"POST /v1/stream HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.socket() as sock:
        sock.settimeout(60)
        if slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        sock.connect(("127.0.0.1", parsed.port))
        sock.sendall(head.encode() + body)
        received = bytearray()
        while chunk := sock.recv(16 << 10 if slow else 1 << 20):
            received += chunk
            if slow:
                time.sleep(0.0005)
    return bytes(received)


def _frame(piece: bytes) -> FrameKind | None:
    """The kind of the frame ``piece`` is, if it is exactly one whole frame."""
    size, kind, _ = struct.unpack_from(">IBI", piece)
    return FrameKind(kind) if len(piece) == 9 + size else None


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


def test_pieces_that_wait_for_room_keep_their_bytes(
    server_url: str, monkeypatch: pytest.MonkeyPatch, h11_data_sizes: list[int]
) -> None:
    """A reader slower than the server: each piece's rest waits for the socket to drain
    (written as it does, from the batch's own memory), and the body is still h11's. A batch
    frame goes as one chunk (HTTP/1.1); HTTP/1.0's body, which h11 writes, is cut into
    pieces."""
    waits = []
    drained = DirectBody._drained

    def counted(self: DirectBody) -> None:
        waits.append(self.unsent())
        drained(self)

    monkeypatch.setattr(DirectBody, "_drained", counted)
    slow = _request(server_url, "1.1", slow=True, spec=LARGE)
    assert len(waits) > 10 and max(waits) >= DIRECT_MIN  # pieces did wait, and were counted
    pieces = list(_dechunk(slow.partition(b"\r\n\r\n")[2]))
    assert max(map(len, pieces)) > LOOPBACK_PIECE
    frames = [_frame(piece) for piece in pieces]
    assert frames.count(FrameKind.BATCH) == LARGE["batches"]  # each batch whole in its chunk
    plain = _request(server_url, "1.0", spec=LARGE).partition(b"\r\n\r\n")[2]
    assert b"".join(pieces) == plain
    assert max(h11_data_sizes) <= LOOPBACK_PIECE

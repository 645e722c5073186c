"""The stream body read from its socket (``augstream._body``): HTTP/1.1 framing decoded by
hand must give exactly the frames that httpx's reading and ``FrameDecoder`` give, however
the bytes are split, and refuse what is broken by name."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from augstream._body import SocketBody, _socket_body, response_frames, socket_frames
from augstream._exceptions import ProtocolError, TruncatedError
from augstream_protocol.wire import Frame, FrameDecoder, FrameKind, encode_batch, encode_json_frame

MAX = 1 << 24


def frame_bytes(seed: int) -> bytes:
    """A header frame, batches of assorted sizes (up to a few hundred KB), an end frame."""
    rng = np.random.default_rng(seed)
    parts: list[bytes | memoryview] = [encode_json_frame(FrameKind.HEADER, {"protocol": 1})]
    for batch in range(4):
        side = int(rng.integers(1, 200))
        x = rng.integers(0, 256, (4, side, side, 3), dtype=np.uint8)
        parts += encode_batch(0, batch, [1, 2, 3, 4], {"x": x, "y": np.arange(4.0)})
        parts.append(encode_json_frame(FrameKind.HEARTBEAT))
    parts.append(encode_json_frame(FrameKind.END))
    return b"".join(parts)


def chunked(data: bytes, rng: random.Random) -> bytes:
    """``data`` in HTTP/1.1 chunks of random sizes, one with an extension, then trailers."""
    out = bytearray()
    at = 0
    while at < len(data):
        size = rng.choice([1, 7, 300, 65536, 262144, rng.randrange(1, 100_000)])
        piece = data[at : at + size]
        extension = b";name=value" if rng.random() < 0.1 else b""
        out += b"%X%s\r\n%s\r\n" % (len(piece), extension, piece)
        at += len(piece)
    return bytes(out + b"0\r\nTrailer-Field: x\r\n\r\n")


def served(payload: bytes, rng: random.Random, close: bool = True) -> socket.socket:
    """A socket whose peer sends ``payload`` in random pieces from a thread (then closes)."""
    mine, theirs = socket.socketpair()

    def send() -> None:
        at = 0
        try:
            while at < len(payload):
                size = rng.choice([1, 9, 1000, 70_000, 1 << 20])
                theirs.sendall(payload[at : at + size])
                at += size
        except OSError:  # the reader stopped at an error (what some tests check) and closed
            theirs.close()
            return
        if close:
            theirs.close()

    threading.Thread(target=send, daemon=True).start()
    mine.settimeout(10)
    return mine


def decoded(data: bytes) -> list[Frame]:
    return FrameDecoder(MAX).feed(data)


def read_all(
    sock: socket.socket, leading: bytes, *, chunked: bool, length: int | None
) -> Iterator[Frame]:
    return socket_frames(SocketBody(sock, leading, chunked=chunked, length=length), MAX)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_socket_frames_are_the_decoders_frames(framing: str, seed: int) -> None:
    rng = random.Random(seed)
    data = frame_bytes(seed)
    body = chunked(data, rng) if framing == "chunked" else data
    # Whatever the parser had received with the headers comes first, then the socket.
    split = rng.randrange(0, 3000)
    with served(body[split:], rng) as sock:
        frames = list(
            read_all(
                sock,
                body[:split],
                chunked=framing == "chunked",
                length=len(data) if framing == "length" else None,
            )
        )
    assert [(f.kind, bytes(f.body)) for f in frames] == [
        (f.kind, bytes(f.body)) for f in decoded(data)
    ]
    assert all(isinstance(f.body, bytearray) for f in frames)


def test_a_length_framed_body_stops_at_its_length() -> None:
    data = frame_bytes(1)
    # Bytes after the body (the next response on a kept-alive connection) are not read.
    with served(data + b"HTTP/1.1 200 OK\r\n", random.Random(0), close=False) as sock:
        frames = list(read_all(sock, b"", chunked=False, length=len(data)))
    assert len(frames) == len(decoded(data))


@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_a_body_cut_inside_a_frame_is_truncated(framing: str) -> None:
    data = frame_bytes(2)
    cut = len(data) // 2
    body = chunked(data[:cut], random.Random(0))[: -len(b"0\r\nTrailer-Field: x\r\n\r\n")]
    sent = body if framing == "chunked" else data[:cut]
    with served(sent, random.Random(1)) as sock, pytest.raises(TruncatedError):
        list(
            read_all(
                sock,
                b"",
                chunked=framing == "chunked",
                length=len(data) if framing == "length" else None,
            )
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "bad chunk-size line"),
        (b"-3\r\nabc\r\n0\r\n\r\n", "bad chunk-size line"),
        (b"3\r\nabcdef\r\n0\r\n\r\n", "longer than its size said"),
        (b"9" * 5000, "too long"),
    ],
)
def test_broken_chunked_framing_is_named(body: bytes, message: str) -> None:
    with served(body, random.Random(0)) as sock, pytest.raises(ProtocolError, match=message):
        list(read_all(sock, b"", chunked=True, length=None))


def test_a_flipped_byte_fails_the_checksum() -> None:
    data = bytearray(frame_bytes(3))
    data[len(data) // 2] ^= 0x40
    with served(bytes(data), random.Random(0)) as sock, pytest.raises(ProtocolError, match="CRC"):
        list(read_all(sock, b"", chunked=False, length=None))


def test_a_silent_peer_is_an_httpx_read_timeout() -> None:
    mine, theirs = socket.socketpair()
    with mine, theirs:
        mine.settimeout(0.2)
        body = SocketBody(mine, b"", chunked=True, length=None)
        with pytest.raises(httpx.ReadTimeout):
            body.readinto(memoryview(bytearray(10)))


def test_a_reset_connection_is_an_httpx_read_error() -> None:
    mine, theirs = socket.socketpair()
    with mine:
        mine.shutdown(socket.SHUT_RDWR)
        theirs.close()
        body = SocketBody(mine, b"", chunked=False, length=None)
        # A shut-down socket reads as the end of a close-delimited body...
        assert body.readinto(memoryview(bytearray(10))) == 0
    # ...and a closed one fails as a read.
    body = SocketBody(mine, b"", chunked=False, length=None)
    with pytest.raises(httpx.ReadError):
        body.readinto(memoryview(bytearray(10)))


def test_a_response_without_the_expected_internals_is_read_through_httpx() -> None:
    """A response httpx did not receive over a socket (here: made in memory; elsewhere:
    HTTP/2, TLS inside a proxy's TLS, another httpx) falls back to httpx's reading."""
    data = frame_bytes(4)
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/stream")
    response = httpx.Response(200, stream=httpx.ByteStream(data), request=request)
    assert _socket_body(response) is None
    frames = list(response_frames(response, MAX))
    assert [(f.kind, bytes(f.body)) for f in frames] == [
        (f.kind, bytes(f.body)) for f in decoded(data)
    ]

"""How the server cuts a stream's chunks into sends (``producer._pieces``, ``piece_size``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from augstream_service.producer import LOOPBACK_PIECE, SEND_PIECE, _pieces, piece_size


@pytest.mark.parametrize(
    ("client", "size"),
    [
        (("127.0.0.1", 5000), LOOPBACK_PIECE),
        (("127.8.9.10", 5000), LOOPBACK_PIECE),
        (("::1", 5000), LOOPBACK_PIECE),
        (("::ffff:127.0.0.1", 5000), LOOPBACK_PIECE),
        (("10.0.0.7", 5000), SEND_PIECE),
        (("2001:db8::1", 5000), SEND_PIECE),
        (("/run/augstream.sock", 0), SEND_PIECE),
        (None, SEND_PIECE),
    ],
)
def test_clients_on_this_machine_get_larger_pieces(
    client: tuple[str, int] | None, size: int
) -> None:
    assert piece_size(client) == size
    assert SEND_PIECE < LOOPBACK_PIECE


def test_pieces_are_the_chunks_cut_at_most_size_bytes_long() -> None:
    chunks = [b"head", bytes(range(256)) * 40, memoryview(b"x" * 1000), b"", b"tail"]

    async def source() -> AsyncIterator[bytes | memoryview]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[bytes | memoryview]:
        return [piece async for piece in _pieces(source(), 1000)]

    pieces = asyncio.run(collect())
    assert b"".join(pieces) == b"".join(chunks)
    assert max(len(p) for p in pieces) == 1000
    assert len(pieces) == 1 + 11 + 1 + 1 + 1  # 10,240 bytes make 11 pieces

"""Many samples' random streams at once: numpy's ``SeedSequence`` -> ``PCG64`` -> doubles,
computed for a whole batch of samples with array arithmetic, bit for bit what
``sampling.sample_rng(seed, epoch, sample_id)`` would draw one sample at a time.

Each sample of a batch has a generator of its own (``sampling.sample_rng``): the same
transform whatever batch, shard, server or thread makes it. Building one ``Generator`` per
sample and drawing from it costs ~20 microseconds of Python per image, under the GIL; here a
batch's streams are seeded and advanced together in a few dozen numpy operations.

The arithmetic is numpy's own (``numpy/random/bit_generator.pyx`` and ``pcg64.h``):
SeedSequence hashes the entropy words into a pool of four 32-bit words and expands it into
the 128-bit state and increment of PCG64 (XSL-RR output, the 128-bit multiplier); a double is
the top 53 bits of the next 64-bit output. 128-bit integers are pairs of uint64 arrays.
``tests/unit/test_streams.py`` checks it against numpy for many seeds, epochs and ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SampleStreams"]

U64 = np.ndarray[Any, np.dtype[np.uint64]]

# SeedSequence's constants (numpy/random/bit_generator.pyx).
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = np.uint64(0xCA01F9DD)
_MIX_MULT_R = np.uint64(0x4973F715)
_POOL_SIZE = 4
_WORD = 0xFFFFFFFF
_M32 = np.uint64(_WORD)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
# PCG64's 128-bit multiplier (PCG_DEFAULT_MULTIPLIER_128), as high and low 64-bit halves.
_MULT_HI = np.uint64(2549297995355413924)
_MULT_LO = np.uint64(4865540595714422341)
_DOUBLE = 1.0 / 9007199254740992.0  # 2**-53


def _words(value: int) -> list[int]:
    """A non-negative int as SeedSequence reads it: 32-bit words, least significant first
    (0 is one word)."""
    words = []
    while True:
        words.append(value & _WORD)
        value >>= 32
        if not value:
            return words


# The words that every sample of a batch shares (the key, the seed, the epoch) are mixed
# as Python ints, the ones that hold its id as uint64 arrays: the same arithmetic on either
# (every value masked to 32 bits), a tenth of the numpy calls.
#: An int (a word every sample shares) or a uint64 array (one word per sample).
Word = Any


def _hashmix(value: Word, const: int) -> tuple[Word, int]:
    value = value ^ const
    const = (const * _MULT_A) & _WORD
    value = (value * const) & _WORD
    return value ^ (value >> 16), const


def _mix(x: Word, y: Word) -> Word:
    if isinstance(x, int) and isinstance(y, int):
        result: Word = (0xCA01F9DD * x - 0x4973F715 * y) & _WORD
    else:
        result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _M32
    return result ^ (result >> 16)


def _mul64(a: U64, b: np.uint64) -> tuple[U64, U64]:
    """The 128-bit product of ``a`` and ``b`` as (high, low) 64-bit halves."""
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = b & _M32, b >> _S32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    middle = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    low = (p00 & _M32) | ((middle & _M32) << _S32)
    high = p11 + (p01 >> _S32) + (p10 >> _S32) + (middle >> _S32)
    return high, low


class SampleStreams:
    """The PCG64 streams of samples ``ids`` of one epoch (``sampling.sample_rng``'s), drawn
    from together: ``doubles()`` is what ``Generator.random()`` gives each of them next."""

    def __init__(self, key: int, seed: int, epoch: int, ids: Sequence[int]) -> None:
        count = len(ids)
        head = [w for value in (key, seed, epoch) for w in _words(value)]
        # Every sample's entropy: the same leading words, then its id's (one word for any
        # id below 2**32; the ids of one batch must need the same number).
        id_words = [_words(int(i)) for i in ids]
        width = max((len(w) for w in id_words), default=1)
        if any(len(w) != width for w in id_words):
            raise ValueError("sample ids of one batch must have the same number of words")
        columns: list[Word] = list(head)
        columns += [np.array([w[k] for w in id_words], dtype=np.uint64) for k in range(width)]
        state = [
            np.broadcast_to(np.asarray(word, dtype=np.uint64), (count,))
            for word in self._generate(self._pool(columns))
        ]
        # generate_state(4, uint64): little-endian pairs of the eight 32-bit words.
        values = [state[2 * k] | (state[2 * k + 1] << _S32) for k in range(4)]
        self._seed(values)

    @staticmethod
    def _pool(entropy: list[Word]) -> list[Word]:
        """SeedSequence.mix_entropy: the pool of four words from the entropy words."""
        const = _INIT_A
        pool: list[Word] = []
        for i in range(_POOL_SIZE):
            word = entropy[i] if i < len(entropy) else 0
            mixed, const = _hashmix(word, const)
            pool.append(mixed)
        for source in range(_POOL_SIZE):
            for target in range(_POOL_SIZE):
                if source != target:
                    hashed, const = _hashmix(pool[source], const)
                    pool[target] = _mix(pool[target], hashed)
        for source in range(_POOL_SIZE, len(entropy)):
            for target in range(_POOL_SIZE):
                hashed, const = _hashmix(entropy[source], const)
                pool[target] = _mix(pool[target], hashed)
        return pool

    @staticmethod
    def _generate(pool: list[Word]) -> list[Word]:
        """SeedSequence.generate_state: eight 32-bit words from the pool."""
        const = _INIT_B
        words = []
        for index in range(8):
            value = pool[index % _POOL_SIZE] ^ const
            const = (const * _MULT_B) & _WORD
            value = (value * const) & _WORD
            words.append(value ^ (value >> 16))
        return words

    def _seed(self, values: list[U64]) -> None:
        """pcg64_set_seed: state 0, increment (initseq << 1) | 1, step, add initstate,
        step."""
        seed_hi, seed_lo, seq_hi, seq_lo = values
        self._inc_hi = (seq_hi << np.uint64(1)) | (seq_lo >> np.uint64(63))
        self._inc_lo = (seq_lo << np.uint64(1)) | np.uint64(1)
        # One step from 0 leaves the increment.
        low = self._inc_lo + seed_lo
        carry = (low < seed_lo).astype(np.uint64)
        self._hi, self._lo = self._inc_hi + seed_hi + carry, low
        self._step()

    def _step(self) -> None:
        """state = state * multiplier + increment (mod 2**128)."""
        high, low = _mul64(self._lo, _MULT_LO)
        high = high + self._lo * _MULT_HI + self._hi * _MULT_LO
        summed = low + self._inc_lo
        carry = (summed < low).astype(np.uint64)
        self._hi, self._lo = high + self._inc_hi + carry, summed

    def uint64s(self) -> U64:
        """Each stream's next 64-bit output (XSL-RR: the halves' xor, rotated by the top six
        bits of the state)."""
        self._step()
        mixed = self._hi ^ self._lo
        rotation = self._hi >> np.uint64(58)
        back = (np.uint64(64) - rotation) & np.uint64(63)
        rotated: U64 = (mixed >> rotation) | (mixed << back)
        return rotated

    def doubles(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each stream's next double in [0, 1): ``Generator.random()``."""
        top = (self.uint64s() >> np.uint64(11)).astype(np.float64)
        return top * _DOUBLE

    def uniform(self, low: float, high: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each stream's next ``Generator.uniform(low, high)``: ``low + (high - low) * u``."""
        return low + (high - low) * self.doubles()

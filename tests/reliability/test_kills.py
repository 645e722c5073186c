"""Every sample of every epoch exactly once, in order, while the server process is killed
(SIGKILL) or stopped (SIGTERM) mid-epoch and restarted."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from augstream import Batch, Client, RetryPolicy
from tests.proxy import CuttingProxy
from tests.reliability.conftest import NO_CACHES, ServerProcess

pytestmark = pytest.mark.slow

SPEC = dict(
    dataset="odd",
    # 49 KB batches: after a death the rest of the epoch rarely fits the socket buffers.
    target_size=(64, 64),
    batch_size=4,
    seed=5,
    epochs=2,
    rotation_range=15,
    horizontal_flip=True,
)
# A restart takes seconds (imports); keep retrying that long, quickly.
PATIENT = RetryPolicy(attempts=60, backoff_s=0.05, max_backoff_s=0.5)


MADE: dict[str, int] = {}


def _read_all(
    url: str | list[str], interrupt: dict[int, Any] | None = None
) -> tuple[list[Batch], int]:
    """Every batch of the finite stream; ``interrupt[n]`` runs after the n-th batch. The
    batches each replica made for it are left in ``MADE``."""
    got: list[Batch] = []
    with Client(url, retry=PATIENT, timeout=10) as client, client.stream(**SPEC) as stream:
        for _ in range(2 * len(stream)):
            got.append(stream.next_batch(timeout=120))
            action = (interrupt or {}).get(len(got))
            if action is not None:
                action()
        with pytest.raises(StopIteration):
            stream.next_batch(timeout=120)
        MADE.clear()
        MADE.update(stream.replicas)
        return got, stream.reconnects


def _check(got: list[Batch], reference: list[Batch], counts: dict[str, Any]) -> None:
    for epoch in (0, 1):
        ids = [i for b in got if b.epoch == epoch for i in b.sample_ids]
        want = [i for b in reference if b.epoch == epoch for i in b.sample_ids]
        missing, duplicated = set(want) - set(ids), len(ids) - len(set(ids))
        assert not missing, f"epoch {epoch}: samples {sorted(missing)} never arrived"
        assert not duplicated, f"epoch {epoch}: {duplicated} samples arrived twice"
        assert ids == want, f"epoch {epoch}: samples arrived out of order"
        counts[f"epoch{epoch}_samples"] = len(ids)
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.x.tobytes() == theirs.x.tobytes()
    counts["batches_compared"] = len(got)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_exactly_once_across_two_server_deaths(
    odd_root: Path, server_process: type[ServerProcess], how: str, counts: dict[str, Any]
) -> None:
    # Without the image and batch caches the server makes batches at decoding pace, as on a
    # cold start (the batch cache would serve the second read from the first one);
    # from a warm cache it could send the rest of the epoch into the socket buffers before a
    # death, and the client would never see it.
    server = server_process(odd_root, **NO_CACHES).start()
    reference, _ = _read_all(server.url)
    assert len(reference) == 2 * 30  # 117 images in batches of 4: 30 per epoch, the last of 1

    restarts: list[threading.Thread] = []

    def die_and_return() -> None:
        server.kill(getattr(signal, how))
        # Restart from another thread: the client's retries run meanwhile.
        restart = threading.Thread(target=server.start, daemon=True)
        restart.start()
        restarts.append(restart)

    got, reconnects = _read_all(server.url, {11: die_and_return, 41: die_and_return})
    # The stream can end before the last restart is up (the kernel's buffers held the rest):
    # stopping the server under a start still waiting for it made that start raise.
    for restart in restarts:
        restart.join(timeout=90)
    _check(got, reference, counts)
    counts.update(deaths=2, signal=how, reconnects=reconnects, server_starts=server.starts)
    # On loopback the kernel's buffers can hold everything a server sent before its second
    # death, so only the first is sure to force a reconnect; exactly-once is checked above.
    assert reconnects >= 1


def test_a_replica_killed_mid_epoch_hands_its_batches_to_the_others(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    servers = [server_process(odd_root, **NO_CACHES).start() for _ in range(3)]
    reference, _ = _read_all(servers[0].url)
    # Ranges of batches go to whichever replica is ready; the killed one's unfinished
    # range (and any it was about to make) must finish on the others. The proxy in front
    # of the second replica also cuts its first connection after a few batches, as a
    # network that loses a dead replica's unsent batches would (on loopback the kernel's
    # buffers may hold them); with small ranges the kill may come first.
    batch = 4 * 64 * 64 * 3
    proxy = CuttingProxy(servers[1].port, cut_after=lambda n: 3 * batch + 500 if n == 0 else None)
    try:
        urls = [servers[0].url, proxy.url, servers[2].url]
        got, reconnects = _read_all(urls, {5: lambda: servers[1].kill(signal.SIGKILL)})
    finally:
        proxy.close()
    _check(got, reference, counts)
    made = {url.rsplit(":", 1)[1]: n for url, n in MADE.items()}
    counts.update(replicas=3, killed=1, cuts=proxy.cuts, reconnects=reconnects, made=made)
    assert sum(MADE.values()) == len(got)
    killed = MADE.get(proxy.url, 0)
    # The killed replica made at most what it had begun before it died; the others the rest.
    assert killed < len(got) // 3, MADE
    assert all(n > 0 for url, n in MADE.items() if url != proxy.url), MADE

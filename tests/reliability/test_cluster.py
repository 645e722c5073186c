"""A cluster on loopback: replicas on 127.0.0.2, 127.0.0.3, ... (one port, as pods), one name
for all of them served by a DNS server the test runs, a client that finds them through it.
Replicas join, drain (SIGTERM) and die (SIGKILL) during an epoch; a slow replica; a replica
whose numerics differ. Every sample arrives exactly once, in order, as one server's bytes."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from augstream import Batch, Client, RetryPolicy, Stream
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.cluster import NAME, NameServer
from tests.proxy import CuttingProxy
from tests.reliability.conftest import NO_CACHES, ServerProcess, free_port

pytestmark = pytest.mark.slow

SPEC = dict(
    dataset="odd",
    target_size=(48, 48),
    batch_size=4,
    seed=17,
    epochs=2,
    rotation_range=20,
    horizontal_flip=True,
)
PATIENT = RetryPolicy(attempts=30, backoff_s=0.05, max_backoff_s=0.5)


@pytest.fixture
def dns() -> Iterator[NameServer]:
    server = NameServer()
    yield server
    server.close()


def _reference(url: str) -> list[Batch]:
    with Client(url) as client, client.stream(**SPEC) as stream:
        return [stream.next_batch(timeout=120) for _ in range(2 * len(stream))]


def _stream(
    url: str, dns: NameServer, events: dict[int, Callable[[Stream], Any]]
) -> tuple[list[Batch], dict[str, int], dict[str, str]]:
    """The whole finite stream through the cluster's name; ``events[n](stream)`` runs after
    the n-th batch. Returns the batches, each replica's batches, and the replicas left out."""
    got: list[Batch] = []
    with (
        Client(
            url, retry=PATIENT, timeout=10, nameservers=[dns.nameserver], resolve_every_s=0.3
        ) as client,
        client.stream(**SPEC) as stream,
    ):
        for _ in range(2 * len(stream)):
            got.append(stream.next_batch(timeout=120))
            event = events.get(len(got))
            if event is not None:
                event(stream)
        with pytest.raises(StopIteration):
            stream.next_batch(timeout=120)
        return got, stream.replicas, stream.left_out


def _check_exactly_once(got: list[Batch], reference: list[Batch]) -> None:
    for epoch in (0, 1):
        ids = [i for b in got if b.epoch == epoch for i in b.sample_ids]
        want = [i for b in reference if b.epoch == epoch for i in b.sample_ids]
        assert len(ids) == len(set(ids)), f"epoch {epoch}: a sample arrived twice"
        assert ids == want, f"epoch {epoch}: samples missing or out of order"
    assert [(b.epoch, b.index) for b in got] == [(b.epoch, b.index) for b in reference]
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.x.tobytes() == theirs.x.tobytes()


def test_replicas_join_drain_and_die_mid_epoch_and_the_stream_stays_one_servers(
    odd_root: Path,
    dns: NameServer,
    server_process: type[ServerProcess],
    counts: dict[str, Any],
) -> None:
    port = free_port()
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    replicas = {h: server_process(odd_root, host=h, port=port, **NO_CACHES) for h in hosts}
    for host in hosts[:3]:
        replicas[host].start()
    dns.set(*hosts[:3])
    reference = _reference(replicas["127.0.0.2"].url)

    def scale_up(stream: Stream) -> None:
        replicas["127.0.0.5"].start()
        dns.set(*hosts)
        # The consumer waits until the client has taken the replica in, as a trainer's
        # steps would give it time to: the others prefetch far ahead (the whole rest of
        # the stream, on a loaded machine) while the next events come in a blink, and
        # the joined replica would find nothing left to make.
        deadline = time.monotonic() + 30
        while not any(httpx.URL(u).host == "127.0.0.5" for u in stream.replicas):
            assert time.monotonic() < deadline, f"127.0.0.5 never joined: {stream.replicas}"
            time.sleep(0.05)

    def drain(_: Stream) -> None:  # a scale-down: the endpoint leaves the name, then SIGTERM
        dns.set("127.0.0.2", "127.0.0.4", "127.0.0.5")
        replicas["127.0.0.3"].kill(signal.SIGTERM)

    def crash(_: Stream) -> None:  # a node lost: SIGKILL, the name still lists it for a while
        replicas["127.0.0.4"].kill(signal.SIGKILL)

    def forget(_: Stream) -> None:
        dns.set("127.0.0.2", "127.0.0.5")

    events = {6: scale_up, 24: drain, 38: crash, 44: forget}
    got, made, left_out = _stream(f"http://{NAME}:{port}", dns, events)
    _check_exactly_once(got, reference)
    by_host = {httpx.URL(url).host: n for url, n in made.items()}
    counts.update(batches=len(got), made=by_host, dns_questions=dns.questions)
    assert sum(made.values()) == len(got)
    assert by_host.get("127.0.0.5", 0) > 0, f"the replica that joined made nothing: {by_host}"
    assert not left_out


def test_a_slow_replica_no_longer_sets_the_pace(odd_root: Path, counts: dict[str, Any]) -> None:
    """Three replicas, one behind a proxy that passes a third of what the others send; with
    dynamic assignment it makes far less than a third of the batches (a fixed stride made
    it make exactly a third, so the stream went at three times its pace)."""
    with (
        BackgroundServer(create_app(Settings(datasets=[odd_root], threads=1))) as a,
        BackgroundServer(create_app(Settings(datasets=[odd_root], threads=1))) as b,
        BackgroundServer(create_app(Settings(datasets=[odd_root], threads=1))) as c,
    ):
        reference = _reference(a.url)
        # The pace of one replica alone, in bytes per second, then a third of it.
        started = time.perf_counter()
        _reference(b.url)
        rate = sum(x.x.nbytes for x in reference) / (time.perf_counter() - started)
        slow = CuttingProxy(c.port, cut_after=lambda _: None, rate=rate / 3)
        try:
            with (
                Client([a.url, b.url, slow.url], retry=PATIENT) as client,
                client.stream(**SPEC) as stream,
            ):
                got = [stream.next_batch(timeout=120) for _ in range(2 * len(stream))]
                made = stream.replicas
        finally:
            slow.close()
    _check_exactly_once(got, reference)
    share = made.get(slow.url, 0) / len(got)
    counts.update(batches=len(got), slow_share=round(share, 3), made=list(made.values()))
    # Speeds 1 : 1 : 1/3 would give it 1/7 (0.14) of the batches; a fixed stride gave 1/3.
    assert share < 0.25, made


def test_a_replica_with_other_numerics_is_never_mixed_in(
    odd_root: Path,
    dns: NameServer,
    server_process: type[ServerProcess],
    caplog: pytest.LogCaptureFixture,
    counts: dict[str, Any],
) -> None:
    """The third replica runs the portable numerics (baseline CPU code paths): on this
    machine its warps differ from the native ones', so its digest for warp.1 differs. The
    client keeps the two that agree, says so, and the stream is theirs, byte for byte."""
    port = free_port()
    native = [server_process(odd_root, host=h, port=port) for h in ("127.0.0.2", "127.0.0.3")]
    other = server_process(odd_root, host="127.0.0.4", port=port, AUGSTREAM_NUMERICS="portable")
    for server in (*native, other):
        server.start()
    prints = [httpx.get(f"{s.url}/v1/server", timeout=10).json()["numerics"] for s in native]
    theirs = httpx.get(f"{other.url}/v1/server", timeout=10).json()["numerics"]
    if theirs["warp.1"] == prints[0]["warp.1"]:
        pytest.skip("on this CPU the baseline warp equals the dispatched one")
    dns.set("127.0.0.2", "127.0.0.3", "127.0.0.4")
    reference = _reference(native[0].url)
    with caplog.at_level(logging.WARNING, logger="augstream"):
        got, made, left_out = _stream(f"http://{NAME}:{port}", dns, {})
    _check_exactly_once(got, reference)
    assert set(left_out) == {other.url}
    assert "numerics differ" in left_out[other.url] and "warp.1" in left_out[other.url]
    assert other.url not in made
    message = next(r.getMessage() for r in caplog.records if "leaving replica" in r.getMessage())
    assert other.url in message and "warp.1" in message
    counts.update(left_out=1, message=message[:120])

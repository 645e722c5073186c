"""The schedule of a stream spread over replicas: grants, stealing, failures, overdue heads,
and the order and bound of the reorder buffer. Pure bookkeeping: no network, no threads
(but for the window's wait)."""

from __future__ import annotations

import contextlib
import random
import threading

import pytest

from augstream._schedule import Grant, Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def take(schedule: Schedule, worker: int, second: bool = False) -> Grant | None:
    return schedule.take(worker, wait=0, second=second)


def test_a_lone_worker_holds_the_rest_of_the_stream() -> None:
    schedule = Schedule(3, 10, window=4)
    schedule.join(1)
    grant = take(schedule, 1)
    assert grant is not None and (grant.next, grant.stop) == (3, 10)
    assert take(schedule, 1, second=True) is None
    for position in range(3, 7):
        assert schedule.deliver(grant, position, position)
    assert [schedule.take_batch() for _ in range(4)] == [3, 4, 5, 6]


def test_the_window_holds_a_lone_worker_back_until_the_consumer_takes() -> None:
    schedule = Schedule(0, None, window=2)
    schedule.join(1)
    grant = take(schedule, 1)
    assert grant is not None and grant.stop is None
    assert schedule.deliver(grant, 0, "a") and schedule.deliver(grant, 1, "b")
    delivered = threading.Event()

    def third() -> None:
        schedule.deliver(grant, 2, "c")
        delivered.set()

    threading.Thread(target=third, daemon=True).start()
    assert not delivered.wait(0.3)  # position 2 lies beyond the window
    assert schedule.take_batch() == "a"
    assert delivered.wait(5)
    assert schedule.buffered == 2


def test_workers_share_the_stream_in_grants_inside_the_window() -> None:
    schedule = Schedule(0, 100, window=16, grant_size=4)
    for worker in (1, 2):
        schedule.join(worker)
    grants = [
        take(schedule, 1),
        take(schedule, 2),
        take(schedule, 1, True),
        take(schedule, 2, True),
    ]
    assert [(g.next, g.stop) for g in grants if g] == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert take(schedule, 1, second=True) is None  # the window is full


def test_an_idle_worker_steals_the_later_half_of_the_busiest_grant() -> None:
    schedule = Schedule(0, 10, window=10)
    schedule.join(1)
    busy = take(schedule, 1)  # alone: the whole stream
    assert busy is not None and (busy.next, busy.stop) == (0, 10)
    schedule.join(2)
    stolen = take(schedule, 2)
    assert stolen is not None and (stolen.next, stolen.stop) == (6, 10)
    assert busy.stop == 6
    for position in range(6):
        assert schedule.deliver(busy, position, position) == (position < 5)
    assert not schedule.deliver(busy, 6, 6)  # stolen: the first worker stops there
    for position in range(6, 10):
        schedule.deliver(stolen, position, position)
    assert [schedule.take_batch() for _ in range(10)] == list(range(10))
    with pytest.raises(StopIteration):
        schedule.take_batch()


def test_a_failed_grant_goes_to_the_next_taker_first() -> None:
    schedule = Schedule(0, None, window=12, grant_size=3)
    for worker in (1, 2):
        schedule.join(worker)
    first, second = take(schedule, 1), take(schedule, 2)
    assert first is not None and second is not None
    schedule.deliver(first, 0, 0)
    schedule.fail(first)  # positions 1 and 2 were not received
    again = take(schedule, 2)
    assert again is not None and (again.next, again.stop) == (1, 3)


def test_a_worker_that_leaves_hands_its_positions_back() -> None:
    schedule = Schedule(0, 6, window=6, grant_size=3)
    schedule.join(1)
    schedule.join(2)
    grant = take(schedule, 1)
    assert grant is not None
    schedule.leave(1)
    again = take(schedule, 2)
    assert again is not None and again.next == 0


def test_an_overdue_head_is_made_again_and_the_first_copy_is_kept() -> None:
    clock = Clock()
    schedule = Schedule(0, None, window=8, grant_size=4, clock=clock)
    schedule.join(1)
    schedule.join(2)
    slow = take(schedule, 1)
    fast = take(schedule, 2)
    assert slow is not None and fast is not None
    for position in range(4, 8):
        clock.now += 0.1
        schedule.deliver(fast, position, f"fast {position}")
    # Nothing left inside the window: the fast one steals the slow one's later positions.
    stolen = []
    while (grant := take(schedule, 2)) is not None and not grant.duplicate:
        stolen.append((grant.next, grant.stop))
        schedule.deliver(grant, grant.next, f"fast {grant.next}")
    assert stolen == [(3, 4), (2, 3)]
    assert grant is None  # the slow one holds 0 and 1; its batch is not overdue yet
    assert (slow.next, slow.stop) == (0, 2)
    clock.now += 10
    duplicate = take(schedule, 2)
    assert duplicate is not None and duplicate.duplicate
    assert (duplicate.next, duplicate.stop) == (0, 1)
    assert slow.stop == 1  # the slow one keeps only the batch it is on
    assert not schedule.deliver(duplicate, 0, "copy")
    assert not schedule.deliver(slow, 0, "late original")  # done; the copy was first
    assert schedule.take_batch() == "copy"
    rest = take(schedule, 2)
    assert rest is not None and (rest.next, rest.stop) == (1, 2)
    assert schedule.wasted == 1


def test_a_slow_worker_gets_smaller_ranges_and_no_second_one() -> None:
    clock = Clock()
    schedule = Schedule(0, None, window=64, grant_size=6, clock=clock)
    for worker in (1, 2):
        schedule.join(worker)
    fast, slow = take(schedule, 1), take(schedule, 2)
    assert fast is not None and slow is not None
    for step in range(6):  # the fast one makes a batch every 0.1 s, the slow one every 0.3 s
        clock.now += 0.1
        schedule.deliver(fast, fast.next, "f")
        if step % 3 == 2:
            schedule.deliver(slow, slow.next, "s")
    again = take(schedule, 2)
    assert again is not None and again.count is not None and again.count <= 3
    assert take(schedule, 2, second=True) is None
    quick = take(schedule, 1)
    assert quick is not None and quick.count == 6


def test_a_blocked_lone_worker_takes_the_head_when_it_comes_back_unowned() -> None:
    schedule = Schedule(0, None, window=2, grant_size=1)
    schedule.join(1)
    schedule.join(2)
    head = take(schedule, 1)  # [0, 1)
    ahead = take(schedule, 2)  # [1, 2)
    assert head is not None and ahead is not None and (ahead.next, ahead.stop) == (1, 2)
    schedule.deliver(ahead, 1, "b")
    schedule.leave(1)  # position 0 goes back to the pool
    tail = take(schedule, 2)
    assert tail is not None and tail.next == 0


def test_an_endless_stream_closes_cleanly() -> None:
    schedule = Schedule(0, None, window=4)
    schedule.join(1)
    grant = take(schedule, 1)
    assert grant is not None
    schedule.close()
    assert not schedule.deliver(grant, 0, 0)
    assert schedule.take(1, wait=0) is None
    with pytest.raises(StopIteration):
        schedule.take_batch()


def test_a_fatal_error_reaches_the_consumer_after_the_batches_before_it() -> None:
    schedule = Schedule(0, None, window=4)
    schedule.join(1)
    grant = take(schedule, 1)
    assert grant is not None
    schedule.deliver(grant, 0, "a")
    schedule.fatal(RuntimeError("gone"))
    assert schedule.take_batch() == "a"
    with pytest.raises(RuntimeError, match="gone"):
        schedule.take_batch()


@pytest.mark.parametrize("seed", range(40))
def test_any_mix_of_speeds_failures_and_joins_delivers_every_position_once_in_order(
    seed: int,
) -> None:
    """A random run: workers with their own speeds take grants (and second ones), deliver
    some positions, fail, leave, join; the consumer takes when it likes. Every position
    reaches the consumer exactly once, in order, and the buffer never exceeds the window."""
    rng = random.Random(seed)
    end = rng.randint(20, 120)
    window = rng.choice([2, 4, 8, 16])
    schedule = Schedule(0, end, window=window, grant_size=rng.choice([1, 2, 4]))
    held: dict[int, list[Grant]] = {}
    for worker in range(1, rng.randint(1, 4) + 1):
        schedule.join(worker)
        held[worker] = []
    taken: list[int] = []
    next_worker = len(held) + 1
    for _ in range(20_000):
        if len(taken) == end:
            break
        roll = rng.random()
        if roll < 0.25:
            with contextlib.suppress(TimeoutError):
                taken.append(schedule.take_batch(timeout=0))
            continue
        if roll < 0.27 and len(held) < 6:  # a replica joins
            schedule.join(next_worker)
            held[next_worker] = []
            next_worker += 1
            continue
        if not held:
            schedule.join(next_worker)
            held[next_worker] = []
            next_worker += 1
        worker = rng.choice(list(held))
        grants = held[worker]
        if roll < 0.30 and len(held) > 1:  # a replica leaves
            schedule.leave(worker)
            del held[worker]
            continue
        if roll < 0.34 and grants:  # its connection breaks
            for grant in grants:
                schedule.fail(grant)
            grants.clear()
            continue
        if len(grants) < 2:
            grant = schedule.take(worker, wait=0, second=bool(grants))
            if grant is not None:
                grants.append(grant)
        if grants:
            grant = grants[0]
            position = grant.next
            if grant.stop is None or position < grant.stop:
                # A delivery beyond the window would wait; here only those inside it.
                inside = position < schedule.head + schedule.window
                if inside and not schedule.deliver(grant, position, position):
                    grants.pop(0)
            else:
                grants.pop(0)
        assert schedule.buffered <= schedule.window
    assert taken == list(range(end)), f"seed {seed}: {len(taken)} of {end} positions"


def test_a_consumer_slower_than_its_replicas_gets_whole_grants_not_one_request_a_batch() -> None:
    """The window all handed out and made, the consumer taking one batch at a time: a worker
    that asks gets no sliver of one batch and steals nothing (each would be a request to
    its server for a batch no sooner); it gets a whole grant once the window has room."""
    clock = Clock()
    schedule = Schedule(0, None, window=16, grant_size=4, clock=clock)
    for worker in (1, 2):
        schedule.join(worker)
    sizes = []
    for _ in range(200):
        for worker in (1, 2):
            for second in (False, True):
                grant = take(schedule, worker, second)
                if grant is None:
                    continue
                sizes.append(grant.count)
                for position in range(grant.next, grant.stop or grant.next):
                    clock.now += 0.001 * worker  # worker 2 half as fast: not slow enough
                    schedule.deliver(grant, position, position)
        schedule.take_batch()
    assert set(sizes) == {4}, sizes


def test_a_slow_workers_pace_does_not_count_the_wait_between_its_grants() -> None:
    """A grant's first batch follows its request (and, the window full, the consumer's
    pace): only batches of one grant in a row measure a replica."""
    clock = Clock()
    schedule = Schedule(0, None, window=8, grant_size=4, clock=clock)
    for worker in (1, 2):
        schedule.join(worker)
    for _ in range(3):
        for worker in (1, 2):
            grant = take(schedule, worker)
            assert grant is not None and grant.stop is not None
            if worker == 2:
                clock.now += 5.0  # its request, or a full window: not the replica's pace
            for position in range(grant.next, grant.stop):
                clock.now += 0.1
                schedule.deliver(grant, position, position)
        for _ in range(8):
            schedule.take_batch()
    # Both made a batch every 0.1 s within their grants: the second counts as no slower.
    assert schedule._paces.share(2, {1, 2}) == pytest.approx(1.0)

"""Contender (h)'s report: each process's hold, the busiest's ceiling and the server
process's, against the issue's targets; only worker processes are sampled beside the
server (not multiprocessing's resource tracker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.comparison.gil import (
    isolate,
    isolation,
    keep_awake,
    median_round,
    release,
    report,
    server_processes,
    wake_penalty,
)


def _row(cold: bool, processes: int, ceiling: int, server: int) -> dict[str, object]:
    holds = {"server": 50.0, **({"worker 1": 120.0} if processes else {})}
    return {
        "work": "benchmark", "cold": cold, "processes": processes, "images_per_s": 800.0,
        "gil_us_per_image": holds, "cpu_us_per_image": {k: 2 * v for k, v in holds.items()},
        "busiest": "worker 1" if processes else "server", "ceiling_images_per_s": ceiling,
        "server_ceiling_images_per_s": server,
    }  # fmt: skip


def test_the_report_judges_the_busiest_and_the_server_process() -> None:
    text = report([_row(True, 0, 9_000, 9_000), _row(True, 2, 8_000, 16_000)])
    assert "| cold | benchmark | 2 | 800 | server 50 / 100, worker 1 120 / 240 |" in text
    assert "- ceiling, cold, processes=0, busiest process: 9,000 (target >= 15,000): MISSED" in text
    assert "- ceiling, cold, processes=2, busiest process: 8,000 (target >= 15,000): MISSED" in text
    assert "- ceiling, cold, processes=2, server process: 16,000 (target >= 15,000): met" in text
    assert "processes=0, server process" not in text


def test_an_isolated_row_says_so_in_its_line_and_its_verdicts() -> None:
    text = report([{**_row(False, 2, 12_000, 21_000), "isolated": True}])
    assert "| warm | benchmark | 2, isolated | 800 |" in text
    assert (
        "- ceiling, warm, processes=2, isolated, server process: 21,000 (target >= 20,000): met"
        in text
    )


def test_an_awake_row_says_so_and_the_wake_penalty_is_said_below() -> None:
    row = {**_row(True, 2, 12_000, 16_000), "isolated": True, "awake": True}
    penalty = {"back to back": 12.0, "after a sleep": 50.0}
    text = report([row, {**row, "awake": False}], penalty)
    assert "| cold | benchmark | 2, isolated, awake | 800 |" in text
    assert "| cold | benchmark | 2, isolated | 800 |" in text
    assert (
        "- ceiling, cold, processes=2, isolated, awake, server process: 16,000 "
        "(target >= 15,000): met" in text
    )
    assert ": back to back 12.0 µs, after a sleep 50.0 µs." in text


def _policy(pid: int) -> int:
    # /proc/PID/stat's 41st field (the 39th after the command's closing parenthesis).
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[38])


def test_a_core_is_kept_awake_by_a_loop_that_yields_it_to_anyone() -> None:
    core = min(os.sched_getaffinity(0))
    spinner = keep_awake(core)
    try:
        assert _policy(spinner.pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(spinner.pid) == {core}
        assert spinner.poll() is None  # spinning
    finally:
        spinner.kill()
        spinner.wait()


def test_the_wake_penalty_measures_each_case_and_gives_the_cores_back() -> None:
    mine = os.sched_getaffinity(0)
    found = wake_penalty(pause=0.001)
    assert list(found) == ["back to back", "after a sleep", "after a sleep, core kept awake"]
    assert all(us > 0 for us in found.values())
    assert os.sched_getaffinity(0) == mine


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="isolating needs 2 cores")
def test_isolation_keeps_the_server_core_awake_only_inside_the_block() -> None:
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    server = subprocess.Popen(sleep)
    mine = os.sched_getaffinity(0)
    # Every child alive before (a session's servers too), not only worker processes.
    before = set(_children())
    try:
        with isolation([server.pid], True, awake=True):
            spinning = [pid for pid in _children() if pid != server.pid and pid not in before]
            assert any(os.sched_getaffinity(pid) == {min(mine)} for pid in spinning)
        assert not [pid for pid in _children() if pid in spinning]
    finally:
        server.kill()
        server.wait()
    assert os.sched_getaffinity(0) == mine


def _children() -> list[int]:
    found: list[int] = []
    for path in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        found += [int(n) for n in path.read_text().split()]
    return found


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="isolating needs 2 cores")
def test_isolating_puts_the_server_on_a_core_of_its_own_and_the_rest_elsewhere() -> None:
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    server, worker = subprocess.Popen(sleep), subprocess.Popen(sleep)
    mine = os.sched_getaffinity(0)
    try:
        cores = isolate([server.pid, worker.pid])
        first = min(mine)
        assert cores == mine
        assert os.sched_getaffinity(server.pid) == {first}
        assert os.sched_getaffinity(worker.pid) == mine - {first}
        assert os.sched_getaffinity(0) == mine - {first}
    finally:
        release(mine)
        for child in (server, worker):
            child.kill()
            child.wait()
    assert os.sched_getaffinity(0) == mine


def test_only_worker_processes_are_sampled_beside_the_server() -> None:
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    other = subprocess.Popen(sleep)
    worker = subprocess.Popen([*sleep, "augstream_service.workers"])  # named as a worker is
    try:
        # The kernel lists a new child once it has run: look for a while.
        deadline = time.monotonic() + 10
        while worker.pid not in (found := server_processes(os.getpid())):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # (Worker processes of servers other tests left running may be listed too.)
        assert found[0] == os.getpid() and worker.pid in found and other.pid not in found
    finally:
        for child in (other, worker):
            child.kill()
            child.wait()


def test_each_configuration_keeps_its_median_round() -> None:
    rounds = [
        _row(False, 2, c, s) for c, s in ((9_000, 20_000), (15_000, 14_000), (12_000, 18_000))
    ]
    kept = median_round(rounds)
    assert kept["ceiling_images_per_s"] == 12_000 and kept["server_ceiling_images_per_s"] == 18_000
    assert kept["ceilings_by_round"] == [9_000, 15_000, 12_000]
    text = report([kept])
    assert "| 12,000 (9,000, 15,000, 12,000) | 18,000 (20,000, 14,000, 18,000) |" in text
    assert median_round(rounds[:2])["ceiling_images_per_s"] == 9_000  # the lower middle


def test_the_gil_profile_sums_each_frame_subtree_without_the_plumbing() -> None:
    from benchmarks.gil_profile import render, tree

    lines = [
        "thread (1): MainThread;Thread.run (threading.py:982);send (peers.py:90);write (x.py:1) 6",
        "thread (1): MainThread;send (peers.py:90) 2",
        "thread (2): augstream_0;make (augstream_service/shared.py:137) 4",
        "",
    ]
    found = tree(lines)
    assert found["_"] == 12
    main = found["thread (1): MainThread"]
    assert main["_"] == 8 and list(main) == ["_", "send (peers.py:90)"]  # threading.py dropped
    assert main["send (peers.py:90)"]["write (x.py:1)"]["_"] == 6
    assert "make (shared.py:137)" in found["thread (2): augstream_0"]
    shown = render(found, us_per_sample=0.5, least=2.5)
    assert shown == [
        "   6.0 the server process, all threads",
        "     4.0 thread (1): MainThread",
        "       4.0 send (peers.py:90)",
        "         3.0 write (x.py:1)",
    ]

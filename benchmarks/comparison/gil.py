"""(h) How long each server process holds the GIL per image while it serves a stream, and
the ceiling that implies: images/s divided by the busiest process's share of time under its
GIL. Python under one GIL cannot make images faster than that however many cores the box
has; worker processes (``processes``) each hold their own.

Two measures of each process's hold, both at least the time its Python really needs:
py-spy's share of wall-clock samples in which a thread of it holds the GIL (which also counts
a holder preempted by the kernel, as happens on a busy box), and the process's CPU time
(utime + stime of all its threads, which also counts C work done without the GIL). The
ceiling is taken from the smaller: a lower bound of what the process could reach.

py-spy (``py-spy record --gil``) samples every process of the server (the server and its
worker processes) at ``RATE`` Hz for the window; a sample counts when a thread of that
process holds its GIL. Cold: the server's caches are off, every image read and decoded;
warm: an epoch read first fills them. The client can be paced (``pace`` < 1, a fraction of
the unpaced rate) so that the machine's cores are not all busy while the GIL is sampled: on
a box with spare cores a thread that holds the GIL is not preempted, on a saturated one its
wall-clock hold grows with the preemption.

With worker processes the server process can also be measured ``isolated``: on a core of
its own, its workers and the client on the others (CPU affinity, Linux). On a box with
cores to spare the workers do not run on the server's cores; on this 2-core one they
otherwise preempt its GIL holders, which py-spy then charges as held. Its three threads
still share one core there, so the figure is not flattering.

Isolated, its core can also be kept ``awake``: a process that spins at ``SCHED_IDLE`` on it
(it runs only when no thread of the server wants the core, as the kernel's ``idle=poll``
would), so that the core does not halt between the server's bursts. A virtual machine's
core that halts is handed back to the host, and the first Python run after it wakes takes
several times as long as the same code back to back (``wake_penalty`` measures it on the
machine at hand): the lightly loaded server of a one-stream benchmark pays that on every
burst, a server near its ceiling, busy all the time, does not. The ceiling is a figure for a
server at its ceiling, so the awake rows are the ones that extrapolate to it; the others
stay beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .box import WORKER, box_processes, children, runs, wait_for_siblings
from .ours import served
from .process import serve
from .work import BATCH

__all__ = [
    "CEILINGS",
    "PHOTOMETRIC",
    "RATE",
    "add_arguments",
    "available",
    "cpu_seconds",
    "held",
    "isolate",
    "isolation",
    "keep_awake",
    "measure",
    "median_round",
    "paced",
    "placement",
    "ready",
    "release",
    "report",
    "server_env",
    "server_processes",
    "wake_penalty",
]

#: Samples per second per process.
RATE = 200
#: The photometric-heavy work: the benchmark's, plus colour jitter, blur and noise.
PHOTOMETRIC: dict[str, Any] = {
    "contrast_range": (0.7, 1.3),
    "saturation_range": (0.7, 1.3),
    "hue_shift_range": 10.0,
    "blur_sigma_range": (0.0, 1.5),
    "noise_std_range": (0.0, 8.0),
}
_COLD = {"AUGSTREAM_IMAGE_CACHE_BYTES": "0", "AUGSTREAM_BYTE_CACHE_BYTES": "0"}
#: The issue's targets for the benchmark's work: the ceiling, cold and warm (images/s).
CEILINGS = {True: 15_000, False: 20_000}


def _py_spy() -> str | None:
    """py-spy beside this interpreter (a venv's), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def add_arguments(
    parser: argparse.ArgumentParser, *, threads: int, pace: float, seconds: float
) -> None:
    """The options of a tool that serves (h)'s stream to one paced client (``gil_ab``,
    ``gil_profile``), with that tool's defaults."""
    parser.add_argument("--cold", action="store_true", help="caches off (default: warm)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=threads, help=f"server threads ({threads})")
    parser.add_argument("--pace", type=float, default=pace, help=f"client pace ({pace})")
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"sampling window ({seconds:g})"
    )
    parser.add_argument("--photometric", action="store_true", help="the photometric work")
    parser.add_argument(
        "--isolated", action="store_true", help="the server process on a core of its own"
    )
    parser.add_argument(
        "--awake", action="store_true", help="isolated, its core kept awake (keep_awake)"
    )
    parser.add_argument(
        "--servers", type=int, default=1, help="server processes, the box shared out (1)"
    )
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (1000)")


def available() -> bool:
    """Whether py-spy is installed (``pip install py-spy``; the dev extra has it)."""
    return _py_spy() is not None


def server_processes(pid: int) -> list[int]:
    """The server's process id and its worker processes' (those of its children that run
    ``augstream_service.workers``: not multiprocessing's resource tracker)."""
    return [pid, *(c for c in children(pid) if runs(c, WORKER))]


def held(
    pids: list[int], seconds: float, folder: Path, rate: int = RATE, threads: bool = False
) -> list[subprocess.Popen[bytes]]:
    """Start sampling each process's GIL for ``seconds`` at ``rate`` Hz (raw stacks into
    ``folder``/PID.txt; ``threads``: each stack under its thread's name)."""
    spies = []
    for pid in pids:
        command = [_py_spy() or "py-spy", "record", "--pid", str(pid), "--gil"]
        command += ["--rate", str(rate), *(["--threads"] if threads else [])]
        command += ["--format", "raw", "--output", str(folder / f"{pid}.txt"), "--nonblocking"]
        command += ["--duration", str(round(seconds))]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return spies


def _pin(pid: int, cores: set[int]) -> None:
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread), cores)


def isolate(pids: list[int]) -> set[int]:
    """The server process (``pids[0]``) on the first core this process may use, its worker
    processes and this process (the client) on the rest: the cores this process had
    (to be given back with ``release``)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise ValueError("isolating the server process needs 2 cores")
    _pin(pids[0], {cores[0]})
    for pid in [*pids[1:], os.getpid()]:
        _pin(pid, set(cores[1:]))
    return set(cores)


def release(cores: set[int]) -> None:
    """This process's threads back on ``cores`` (after ``isolate``)."""
    _pin(os.getpid(), cores)


def keep_awake(core: int) -> subprocess.Popen[bytes]:
    """A process spinning on ``core`` at ``SCHED_IDLE`` (to be killed after): any other
    thread that wants the core preempts it at once, and the core never halts. Placed and
    lowered from here before it is returned, so no caller sees it anywhere else."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setscheduler(spinner.pid, os.SCHED_IDLE, os.sched_param(0))
    os.sched_setaffinity(spinner.pid, {core})
    return spinner


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


@contextlib.contextmanager
def isolation(pids: list[int], on: bool, awake: bool = False) -> Iterator[None]:
    """``isolate(pids)`` while in the block if ``on``, the server's core kept awake
    (``keep_awake``) if ``awake`` too; this process's cores given back after."""
    cores = isolate(pids) if on else None
    spinner = keep_awake(min(cores)) if cores is not None and awake else None
    try:
        yield
    finally:
        if spinner is not None:
            _stop(spinner)
        if cores is not None:
            release(cores)


#: A frame header's JSON, the kind of small Python step the server takes per batch.
_STEP = {"epoch": 1, "batch": 2, "ids": list(range(32)), "arrays": [{"name": "x", "n": 1 << 22}]}


def _step_us(pause: float) -> float:
    """The median µs of ``_STEP`` run once after each ``pause`` seconds of sleep (none: back
    to back, after a warm-up run)."""
    found = []
    for _ in range(60):
        if pause:
            time.sleep(pause)
        else:
            json.dumps(_STEP)
        started = time.perf_counter()
        json.dumps(_STEP)
        found.append(time.perf_counter() - started)
    return statistics.median(found) * 1e6


def wake_penalty(pause: float = 0.003) -> dict[str, float]:
    """What a core that halts charges the first Python after it wakes, on this machine: µs
    of one small step back to back, right after a ``pause`` s sleep, and right after the
    same sleep on a core kept awake (this process on one core meanwhile)."""
    cores = os.sched_getaffinity(0)
    core = min(cores)
    os.sched_setaffinity(0, {core})
    try:
        found = {"back to back": _step_us(0), "after a sleep": _step_us(pause)}
        spinner = keep_awake(core)
        try:
            time.sleep(0.2)  # started and spinning
            found["after a sleep, core kept awake"] = _step_us(pause)
        finally:
            _stop(spinner)
    finally:
        os.sched_setaffinity(0, cores)
    return {name: round(us, 1) for name, us in found.items()}


def cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used so far, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _share(path: Path, seconds: float) -> float:
    if not path.exists():
        return 0.0
    samples = sum(int(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines() if line)
    return samples / (RATE * seconds)


def server_env(processes: int, cold: bool, servers: int = 1) -> dict[str, str]:
    """The settings of a measured server: ``processes`` workers, caches off if ``cold``,
    ``servers`` server processes (the box's threads and workers shared out over them)."""
    env = {"AUGSTREAM_PROCESSES": str(processes), **(_COLD if cold else {})}
    return env | ({"AUGSTREAM_SERVERS": str(servers)} if servers > 1 else {})


def ready(stream: Iterator[Any], root: Path, cold: bool, pace: float) -> float:
    """Read ``stream`` until it runs as measured (warm: an epoch, which fills the caches),
    then for 2 s at full speed: the seconds between batches that read at ``pace`` of that
    (0 unpaced)."""
    per_epoch = -(-len(list(root.rglob("*.jpg"))) // BATCH)
    for _ in range(per_epoch if not cold else 4):
        next(stream)
    if pace >= 1:
        return 0.0
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < 2.0:
        count += len(next(stream))
    return BATCH / (pace * count / (time.perf_counter() - started))


def paced(
    stream: Iterator[Any], interval: float, spies: list[subprocess.Popen[bytes]]
) -> tuple[float, float]:
    """Read a batch every ``interval`` seconds (or as fast as it comes) while a spy samples:
    images/s and the seconds read."""
    images, started = 0, time.perf_counter()
    while any(spy.poll() is None for spy in spies):
        batch_started = time.perf_counter()
        images += len(next(stream))
        wait = interval - (time.perf_counter() - batch_started)
        if wait > 0:
            time.sleep(wait)
    elapsed = time.perf_counter() - started
    return images / elapsed, elapsed


def measure(
    root: Path,
    *,
    cold: bool,
    processes: int,
    threads: int,
    fields: dict[str, Any] | None = None,
    seconds: float = 6.0,
    pace: float = 1.0,
    isolated: bool = False,
    awake: bool = False,
    servers: int = 1,
) -> dict[str, Any]:
    """Serve ``root`` (the benchmark's work, plus ``fields``) to one stream and sample every
    server process's GIL for ``seconds``: images/s, each process's share and microseconds of
    GIL per image, the busiest, and the ceiling they imply. ``isolated``: the server process
    on a core of its own (``isolate``) from the warm-up on; ``awake``: that core kept awake
    (``keep_awake``). ``servers``: that many server processes (``--servers``), the stream
    spread over them; the server's figure is the busiest server process's."""
    if isolated and servers > 1:
        raise ValueError("isolated puts one server process on a core of its own")
    with (
        serve(root, threads, server_env(processes, cold, servers)) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        wait_for_siblings(server.url)
        stream = served(server.url, **(fields or {}))
        names = box_processes(server.pid)
        pids = list(names)
        with isolation(pids, isolated, awake), contextlib.closing(stream):
            interval = ready(stream, root, cold, pace)
            spies = held(pids, seconds, Path(tmp))
            cpu = {pid: cpu_seconds(pid) for pid in pids}
            rate, elapsed = paced(stream, interval, spies)
            used = {pid: cpu_seconds(pid) - cpu[pid] for pid in pids}
        gil = {names[pid]: _share(Path(tmp) / f"{pid}.txt", seconds) for pid in pids}
        cpus = {names[pid]: used[pid] / elapsed for pid in pids}
    gil = {name: share for name, share in gil.items() if share > 0 or name.startswith("server")}
    # Each process's hold: the smaller of its GIL share and its CPU share (see above).
    holds = {name: min(share, cpus[name]) for name, share in gil.items()}
    busiest = max(holds, key=holds.__getitem__)
    hold = max(share for name, share in holds.items() if name.startswith("server"))
    return {
        "servers": servers,
        "server_ceiling_images_per_s": round(rate / max(hold, 1e-9)),
        "images_per_s": round(rate, 1),
        "gil_share": {name: round(share, 3) for name, share in gil.items()},
        "cpu_share": {name: round(cpus[name], 3) for name in gil},
        "gil_us_per_image": {name: round(share * 1e6 / rate, 1) for name, share in gil.items()},
        "cpu_us_per_image": {name: round(cpus[name] * 1e6 / rate, 1) for name in gil},
        "busiest": busiest,
        "ceiling_images_per_s": round(rate / max(holds[busiest], 1e-9)),
    }


def median_round(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one configuration's rounds, the one with the median ceiling (the lower middle of
    an even count), with every round's ceilings beside it."""
    ranked = sorted(rows, key=lambda row: row["ceiling_images_per_s"])
    middle = ranked[(len(ranked) - 1) // 2]
    return {
        **middle,
        "ceilings_by_round": [row["ceiling_images_per_s"] for row in rows],
        "server_ceilings_by_round": [row["server_ceiling_images_per_s"] for row in rows],
    }


def _each(row: dict[str, Any], key: str) -> str:
    found = row.get(f"{key}s_by_round", [])
    return f" ({', '.join(f'{c:,}' for c in found)})" if len(found) > 1 else ""


def placement(row: dict[str, Any]) -> str:
    """``, isolated`` or ``, isolated, awake`` for a row measured so, ``, 2 servers`` for
    one of several server processes; else nothing."""
    if row.get("servers", 1) > 1:
        return f", {row['servers']} servers"
    if not row.get("isolated"):
        return ""
    return ", isolated, awake" if row.get("awake") else ", isolated"


def report(found: list[dict[str, Any]], penalty: dict[str, float] | None = None) -> str:
    """(h) as a Markdown table, and the benchmark's work against the targets; ``penalty``
    (``wake_penalty``'s figures) said below it."""
    lines = [
        "| (h) GIL | work | processes | images/s | us per image, each process: GIL held "
        "(py-spy) / CPU | busiest | ceiling, images/s (each round) | the server process's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        each = ", ".join(
            f"{name} {us:.0f} / {row['cpu_us_per_image'][name]:.0f}"
            for name, us in row["gil_us_per_image"].items()
        )
        processes = f"{row['processes']}{placement(row)}"
        lines.append(
            f"| {'cold' if row['cold'] else 'warm'} | {row['work']} | {processes} "
            f"| {row['images_per_s']:.0f} | {each} | {row['busiest']} "
            f"| {row['ceiling_images_per_s']:,}{_each(row, 'ceiling')} "
            f"| {row['server_ceiling_images_per_s']:,}{_each(row, 'server_ceiling')} |"
        )
    lines += [
        "",
        "A worker's hold per image falls as workers are added (each makes 1/processes of "
        "the images); the server process's does not: on a box with more workers its ceiling "
        "is the one that stays. Isolated: the server process on a core of its own, its "
        "workers and the client on the others, as on a box with cores to spare; awake: that "
        "core kept from halting between the server's bursts, as a server near its ceiling "
        "keeps it.",
        "",
    ]
    if penalty:
        lines += [
            "One small Python step (a frame header's JSON) on this machine: "
            + ", ".join(f"{name} {us:.1f} µs" for name, us in penalty.items())
            + ".",
            "",
        ]
    for row in found:
        if row["work"] != "benchmark":
            continue
        target = CEILINGS[row["cold"]]
        ceilings = [("busiest process", row["ceiling_images_per_s"])]
        if row["processes"]:
            ceilings.append(("server process", row["server_ceiling_images_per_s"]))
        isolated = placement(row)
        for what, ceiling in ceilings:
            met = "met" if ceiling >= target else "MISSED"
            lines.append(
                f"- ceiling, {'cold' if row['cold'] else 'warm'}, processes={row['processes']}"
                f"{isolated}, {what}: {ceiling:,} (target >= {target:,}): {met}"
            )
    return "\n".join(lines)

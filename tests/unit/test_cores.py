"""The cores a server sizes itself from: its affinity and the container's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augstream_service import cores
from augstream_service.cores import PROCESSES_FROM, allowed_cores, default_processes

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_v2_quota_rounds_up_to_whole_cores(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, {"cpu.max": "150000 100000\n"})
    assert allowed_cores(root) == min(AFFINITY, 2)


def test_a_quota_under_one_core_still_gives_one(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, {"cpu.max": "20000 100000\n"})
    assert allowed_cores(root) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    assert allowed_cores(_cgroup(tmp_path, {"cpu.max": "max 100000\n"})) == AFFINITY
    assert allowed_cores(tmp_path / "absent") == AFFINITY


def test_a_v1_quota_is_read_too(tmp_path: Path) -> None:
    period = {"cpu/cpu.cfs_period_us": "100000\n"}
    root = _cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "100000\n", **period})
    assert allowed_cores(root) == 1
    unlimited = _cgroup(tmp_path / "v1", {"cpu/cpu.cfs_quota_us": "-1\n", **period})
    assert allowed_cores(unlimited) == AFFINITY


@pytest.mark.parametrize(
    ("count", "processes"), [(1, 0), (2, 0), (PROCESSES_FROM - 1, 0), (PROCESSES_FROM, 2), (9, 2),
                             (16, 4), (32, 8), (64, 16)]
)  # fmt: skip
def test_worker_processes_start_from_eight_cores_one_per_four(
    monkeypatch: pytest.MonkeyPatch, count: int, processes: int
) -> None:
    monkeypatch.setattr(cores, "allowed_cores", lambda: count)
    assert default_processes() == processes


def test_the_settings_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from augstream_service.settings import Settings, worker_threads

    monkeypatch.delenv("AUGSTREAM_PROCESSES", raising=False)
    monkeypatch.delenv("AUGSTREAM_THREADS", raising=False)
    monkeypatch.setattr(cores, "allowed_cores", lambda: 16)
    monkeypatch.setattr("augstream_service.settings.allowed_cores", lambda: 16)
    settings = Settings()
    assert (settings.threads, settings.processes, worker_threads(settings)) == (16, 4, 4)
    assert worker_threads(Settings(threads=6, processes=4)) == 2  # rounded up
    assert worker_threads(Settings(processes=4, worker_threads=1)) == 1


def test_the_start_up_line_says_where_the_core_count_comes_from(tmp_path: Path) -> None:
    node = os.cpu_count()
    quota = _cgroup(tmp_path / "q", {"cpu.max": "150000 100000\n"})
    allowed = min(AFFINITY, 2)
    plural = "core" if allowed == 1 else "cores"
    assert cores.describe_cores(quota) == (
        f"{allowed} {plural} (CPU affinity {AFFINITY} of the machine's {node}, "
        "CPU quota 1.5 cores (cgroup, rounded up))"
    )
    whole = _cgroup(tmp_path / "w", {"cpu.max": "100000 100000\n"})
    assert cores.describe_cores(whole).endswith(", CPU quota 1 cores (cgroup))")
    plural = "core" if AFFINITY == 1 else "cores"
    assert cores.describe_cores(tmp_path / "absent") == (
        f"{AFFINITY} {plural} (CPU affinity {AFFINITY} of the machine's {node})"
    )


def test_the_start_up_line_gives_one_server_process_s_share() -> None:
    from augstream_service.cli import sizing_line
    from augstream_service.settings import Settings
    from augstream_service.siblings import share

    box = Settings(
        threads=16, processes=4, image_cache_bytes=2 << 30, byte_cache_bytes=512 << 20,
        batch_cache_bytes=0, memory_budget_bytes=48 << 30,
    )  # fmt: skip
    assert sizing_line(box, "16 cores (...)") == (
        "sized for 16 cores (...): this server process: 16 threads, 4 worker processes of 4 "
        "threads each; caches: decoded images 2.0 GiB, file bytes 512 MiB, finished batches "
        "off; memory budget 48.0 GiB"
    )
    each = share(box, 4).model_copy(update={"sibling_ports": [8080, 8081, 8082, 8083]})
    assert sizing_line(each, "16 cores (...)") == (
        "sized for 16 cores (...): 4 server processes, each with 4 threads, 1 worker process "
        "of 4 threads each; caches: decoded images 512 MiB, file bytes 128 MiB, finished "
        "batches off; memory budget 12.0 GiB"
    )
    alone = Settings(threads=1, processes=0, memory_budget_bytes=1 << 30)
    assert "this server process: 1 thread making the batches (no worker processes);" in (
        sizing_line(alone, "1 core (...)")
    )
    # What the operator set is said to be set, so the line does not claim it from the cores.
    told = sizing_line(box, "2 cores (...)", given={"processes", "threads", "api_keys"})
    assert ": this server process: 16 threads, 4 worker processes of 4 threads each (threads, " in (
        told
    )
    assert "each (threads, processes as set, not from the cores); caches:" in told


def test_v1_server_reports_the_worker_threads_only_with_worker_processes() -> None:
    from augstream_service.settings import Settings, sizing

    assert sizing(Settings(threads=8, processes=2, sibling_ports=[1, 2])) == {
        "allowed_cores": cores.allowed_cores(), "threads": 8, "processes": 2,
        "worker_threads": 4, "servers": 2,
    }  # fmt: skip
    assert sizing(Settings(threads=2, processes=0))["worker_threads"] is None

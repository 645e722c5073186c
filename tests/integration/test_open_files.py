"""A big box's worker processes need more descriptors than a shell or a systemd service
starts a process with (1,024): the pool raises the soft limit as far as the hard one allows,
and refuses to start, naming its settings, when even that is too few."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from tests.imagefolder import make_image_folder

#: Starts a pool of 2 workers with 64 server threads (64 lanes: ~330 descriptors) and prints
#: the soft limit it then runs under.
_START = """
import resource, sys
from pathlib import Path
from augstream_service import Settings
from augstream_service.processes import ProcessPool
root, uploads = Path(sys.argv[1]), Path(sys.argv[2])
pool = ProcessPool(Settings(datasets=[root], threads=64, upload_dir=uploads), 2)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
pool.close()
"""


def _start(tmp_path: Path, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    root = make_image_folder(tmp_path / "pets", per_class=(2, 2))

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    command = [sys.executable, "-c", _START, str(root), str(tmp_path / "uploads")]
    return subprocess.run(command, preexec_fn=limited, capture_output=True, text=True, timeout=120)


def test_a_low_soft_limit_is_raised_for_the_workers_pipes(tmp_path: Path) -> None:
    done = _start(tmp_path, 256, 2048)
    assert done.returncode == 0, done.stderr
    assert 512 < int(done.stdout.split()[-1]) <= 2048


def test_a_hard_limit_too_low_is_refused_naming_the_settings(tmp_path: Path) -> None:
    done = _start(tmp_path, 256, 512)
    assert done.returncode != 0
    assert "ValueError: processes=2 with threads=64 needs about" in done.stderr
    assert "at most 512 (ulimit -Hn)" in done.stderr

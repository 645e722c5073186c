"""What the server's log and the demo's stderr say: a client that exits is not a warning, and
TensorFlow's load-time banner is not the demo's business."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import logging
from augstream_service.logs import configure_logging
configure_logging({level!r})
logging.getLogger("asyncio").warning("socket.send() raised exception.")
logging.getLogger("asyncio").warning("something else")
"""


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_client_that_exits_is_no_warning(level: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE.format(level=level)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = result.stderr.splitlines()
    assert any("WARNING asyncio" in line and "something else" in line for line in lines)
    gone = [line for line in lines if "socket.send() raised exception" in line]
    assert gone == ([] if level == "info" else [gone[0]])
    assert all("DEBUG asyncio" in line for line in gone)


def test_the_demo_passes_on_stderr_but_tensorflows_load_banner() -> None:
    code = """
import os, sys
from augstream._demo import _without_banner
with _without_banner():
    for line in (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on. You may see ...",
        "a real problem",
    ):
        os.write(2, (line + "\\n").encode())  # as C++ writes, below Python's sys.stderr
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stderr == "a real problem\n"

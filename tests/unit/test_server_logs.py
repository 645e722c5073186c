"""The server's log says what an operator must know: a client that exits is not a warning."""

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

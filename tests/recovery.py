"""The trainer's one WARNING line for a stream that came back, as the tests match it."""

from __future__ import annotations

import re


def resumed_seconds(line: str, url: str, failed: str = r"\d+") -> float:
    """The seconds a resume on the same replica of ``url`` took, read from its WARNING
    ``line`` (after ``failed`` reconnects, a regex); fails the test where the line differs."""
    found = re.fullmatch(
        rf"augstream: lost the stream at batch \d+ of epoch \d+ on {re.escape(url)} \(.+\); "
        rf"resumed there on the same replica after (\d+\.\d) s and {failed} failed reconnects",
        line,
    )
    assert found, line
    return float(found.group(1))

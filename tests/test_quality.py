"""ruff and mypy are part of the test suite, so the one test command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every folder of Python the repository holds.
SOURCES = ["protocol", "client", "service", "tests", "benchmarks", "docs"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "protocol", "client", "service", "tests", "benchmarks", "docs"],
        [
            "ruff",
            "format",
            "--check",
            "protocol",
            "client",
            "service",
            "tests",
            "benchmarks",
            "docs",
        ],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_static_checks(command: list[str]) -> None:
    passes([sys.executable, "-m", *command])


def passes(command: list[str]) -> None:
    """Run ``command`` in the repository; it must succeed (its output is the message)."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


# No Docker engine here: the deployment files are checked by hadolint and the compose
# specification's schema; the container's command itself runs in
# tests/integration/test_container.py.
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/trainer/Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    passes([str(BIN / "hadolint"), "--failure-threshold", "info", dockerfile])


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = "vendor.compose-spec"
    passes([str(BIN / "check-jsonschema"), "--builtin-schema", schema, "docker/compose.yaml"])


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) >= 2 and commands[1] == ci

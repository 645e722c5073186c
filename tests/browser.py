"""Headless Chromium for the page test: Debian's ``chromium`` and ``chromium-driver``,
installed here when missing (apt-get, as root or through password-less sudo)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PACKAGES = ["chromium", "chromium-driver"]


def _binaries() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium() -> tuple[str, str]:
    """Paths of the browser and its driver, installing Debian's packages if need be."""
    found = _binaries()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if apt is None or (prefix and shutil.which("sudo") is None):
        pytest.fail(f"the page test needs {' and '.join(PACKAGES)}; install them (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*prefix, apt, "update", "-qq"],
        [*prefix, apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"installing {PACKAGES} failed: {' '.join(command)}: {done.stderr[-800:]}")
    found = _binaries()
    if found is None:
        pytest.fail(f"{PACKAGES} installed, but chromium or chromedriver is not on PATH")
    return found

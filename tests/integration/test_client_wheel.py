"""A trainer installs the client that matches a server from the server itself, with pip:
``pip install "augstream[keras] @ http://server/client/<wheel>"``, or ``--find-links`` on
the page beside it; no key needed (the wheel is code, no data)."""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import augstream
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

pytestmark = pytest.mark.slow

WHEEL = f"augstream-{augstream.__version__}-py3-none-any.whl"


@pytest.fixture(scope="module")
def keyed_url(image_root: Path) -> Iterator[str]:
    """A server with an API key: the client is served without one."""
    app = create_app(Settings(datasets=[image_root], api_keys=["secret"], threads=1))
    with BackgroundServer(app) as server:
        yield server.url


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", *args],
        check=True,
        timeout=120,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def _installed(target: Path) -> str:
    """The version of augstream imported from ``target`` (not from this checkout)."""
    code = (
        "import augstream, importlib.metadata as m, sys; "
        f"assert augstream.__file__.startswith({str(target)!r}), augstream.__file__; "
        "print(augstream.__version__, m.version('augstream'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=target,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=60,
    )
    return out.stdout.strip()


def test_the_page_links_the_wheel_with_its_digest(keyed_url: str) -> None:
    page = httpx.get(f"{keyed_url}/client/")
    assert page.status_code == 200, page.text
    wheel = httpx.get(f"{keyed_url}/client/{WHEEL}")
    assert wheel.status_code == 200
    digest = hashlib.sha256(wheel.content).hexdigest()
    assert re.search(rf"href='{re.escape(WHEEL)}#sha256={digest}'", page.text)
    command = f'pip install "augstream[keras] @ {keyed_url}/client/{WHEEL}"'
    assert command in html.unescape(page.text)
    other = httpx.get(f"{keyed_url}/client/augstream-9.9.9-py3-none-any.whl")
    assert other.status_code == 404 and WHEEL in other.text
    info = httpx.get(f"{keyed_url}/v1/server", headers={"Authorization": "Bearer secret"})
    assert info.json()["client_wheel"] == f"/client/{WHEEL}"


def test_pip_installs_the_client_from_the_server(keyed_url: str, tmp_path: Path) -> None:
    direct = tmp_path / "direct"
    _pip("--target", str(direct), f"augstream[keras] @ {keyed_url}/client/{WHEEL}")
    assert _installed(direct) == f"{augstream.__version__} {augstream.__version__}"
    assert (direct / "augstream" / "py.typed").exists()
    assert (direct / "augstream_service" / "ui" / "index.html").exists()
    found = tmp_path / "found"
    _pip("--target", str(found), "--no-index", "--find-links", f"{keyed_url}/client/", "augstream")
    assert _installed(found).startswith(augstream.__version__)

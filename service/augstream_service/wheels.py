"""The client that matches this server, served by the server itself: a trainer installs it with
one pip command, whatever registry it can or cannot reach.

``GET /client/`` is a page pip understands (a link to the wheel with its SHA-256, for
``pip install --find-links``) that also tells a person the command; ``GET /client/<wheel>``
is the wheel, so ``pip install "augstream[keras] @ http://lab-server:8080/client/<wheel>"``
installs it with the extras a trainer wants (their dependencies come from the trainer's own
index). The wheel is built once, in memory, from the files of the installed ``augstream``
distribution (an editable checkout or a regular install alike) and its metadata: the same
packages, the same version, the same dependencies. It holds code, not data: no key needed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.metadata
import importlib.util
import io
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

__all__ = ["PREFIX", "Wheel", "build_wheel", "router", "wheel_name", "wheel_path"]

#: Where the client is served; open to callers without a key (``auth.OPEN_PREFIXES``).
PREFIX = "/client/"
_DISTRIBUTION = "augstream"
#: A fixed time for every entry, so the same files always make the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)

router = APIRouter()


def wheel_name(version: str) -> str:
    """The wheel's file name for ``version`` (pip reads name, version and tags from it)."""
    return f"{_DISTRIBUTION}-{version.replace('-', '_')}-py3-none-any.whl"


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name, bytes and SHA-256 (hex)."""

    name: str
    data: bytes
    sha256: str


def _package_files(package: str) -> list[tuple[str, Path]]:
    """Every file of an importable package, as (path in the wheel, file): sources, typing
    markers, the page's assets; no bytecode, nothing hidden."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        found.append(("/".join((package, *parts)), path))
    return found


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _distribution() -> importlib.metadata.Distribution:
    """The installed distribution: its ``.dist-info`` (what pip and uv write), before an
    ``.egg-info`` a checkout may hold from an older build."""
    found = list(importlib.metadata.distributions(name=_DISTRIBUTION))
    if not found:
        raise RuntimeError(f"the {_DISTRIBUTION} distribution is not installed")
    return next((d for d in found if d.read_text("METADATA")), found[0])


@functools.cache
def wheel_path() -> str:
    """Where this server serves its client's wheel (``/client/augstream-...whl``)."""
    return PREFIX + wheel_name(_distribution().version)


def build_wheel() -> Wheel:
    """The installed distribution as a wheel (pure Python, any platform)."""
    dist = _distribution()
    version = dist.version
    info = f"{_DISTRIBUTION}-{version.replace('-', '_')}.dist-info"
    packages = (dist.read_text("top_level.txt") or _DISTRIBUTION).split()
    entries = [(name, path.read_bytes()) for p in packages for name, path in _package_files(p)]
    wheel_text = (
        "Wheel-Version: 1.0\nGenerator: augstream-service\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    for name, text in (
        ("METADATA", dist.read_text("METADATA") or dist.read_text("PKG-INFO")),
        ("WHEEL", wheel_text),
        ("entry_points.txt", dist.read_text("entry_points.txt")),
        ("top_level.txt", "\n".join(packages) + "\n"),
    ):
        if text is not None:
            entries.append((f"{info}/{name}", text.encode()))
    record = "\n".join([*(_record_line(n, d) for n, d in entries), f"{info}/RECORD,,"]) + "\n"
    entries.append((f"{info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data, zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    return Wheel(wheel_name(version), data, hashlib.sha256(data).hexdigest())


_built: Wheel | None = None
_lock = threading.Lock()


def served_wheel() -> Wheel:
    """The wheel, built on first use and kept."""
    global _built
    with _lock:
        if _built is None:
            _built = build_wheel()
        return _built


def _page(base: str, wheel: Wheel) -> str:
    url = f"{base}{wheel.name}"
    commands = (
        f'pip install "augstream[keras] @ {url}"',
        f"pip install {url}",
    )
    shown = "".join(f"<pre>{html.escape(c)}</pre>" for c in commands)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>augstream client</title>"
        "</head><body><h1>The augstream client for this server</h1>"
        "<p>On a trainer, install the client that matches this server (with Keras, or the "
        "client alone):</p>"
        f"{shown}"
        f"<p><a href='{html.escape(wheel.name)}#sha256={wheel.sha256}'>"
        f"{html.escape(wheel.name)}</a></p></body></html>"
    )


@router.get(PREFIX, summary="The client for this server: a page pip reads, and its command")
def client_index(request: Request) -> HTMLResponse:
    """A page with a link to the client wheel (``pip install --find-links`` reads it) and the
    ``pip install`` commands that install it from here."""
    wheel = served_wheel()
    base = str(request.url.replace(query="", fragment="")).split("?")[0]
    return HTMLResponse(_page(base if base.endswith("/") else base + "/", wheel))


@router.get(
    PREFIX + "{filename}",
    summary="The client wheel: pip install it from this URL",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {}},
)
def client_wheel(filename: str) -> Response:
    """The wheel of the ``augstream`` version this server runs; 404 (naming the one there is)
    for any other file name."""
    wheel = served_wheel()
    if filename != wheel.name:
        message = f"no {filename!r} here; this server serves {PREFIX}{wheel.name}"
        return Response(message, status_code=404, media_type="text/plain")
    return Response(
        wheel.data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{wheel.name}"'},
    )

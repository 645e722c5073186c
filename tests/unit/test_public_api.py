"""The public surface is deliberate, and ``import augstream`` stays light."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import augstream

MODULES = [
    "augstream_protocol",
    "augstream_protocol.fields",
    "augstream_protocol.selection",
    "augstream_protocol.augmentation",
    "augstream_protocol.spec",
    "augstream_protocol.wire",
    "augstream_protocol.npy",
    "augstream_protocol.info",
    "augstream_protocol.stats",
    "augstream_protocol.errors",
    "augstream",
    "augstream.spec",
    "augstream.wire",
    "augstream.info",
    "augstream.client",
    "augstream.stream",
    "augstream.generator",
    "augstream.stats",
    "augstream_service",
    "augstream_service.sampling",
    "augstream_service.pipeline",
    "augstream_service.augment",
    "augstream_service.decode",
    "augstream_service.sources",
    "augstream_service.catalog",
    "augstream_service.samples",
    "augstream_service.resolve",
    "augstream_service.uploads",
    "augstream_service.producer",
    "augstream_service.stats",
    "augstream_service.fit",
    "augstream_service.batchcache",
    "augstream_service.shared",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    for attr in module.__all__:
        value = getattr(module, attr)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert getattr(value, "__doc__", None), f"{name}.{attr} has no docstring"


def test_top_level_surface() -> None:
    assert set(augstream.__all__) == {
        "ArrayRefs",
        "AugstreamError",
        "AuthenticationError",
        "Batch",
        "BusyError",
        "Client",
        "ConnectionError",
        "ConnectionLostError",
        "DatasetInfo",
        "DatasetStats",
        "FileListing",
        "ImageDataGenerator",
        "IncompatibleStreamError",
        "InvalidSpecError",
        "NotFoundError",
        "Position",
        "ProtocolError",
        "RetryPolicy",
        "ServerError",
        "ServerInfo",
        "Shard",
        "Stream",
        "StatsRefs",
        "StatsRequest",
        "StreamClosedError",
        "StreamHeader",
        "StreamSpec",
        "TooLargeError",
        "TruncatedError",
        "__version__",
    }


def test_exception_tree() -> None:
    assert issubclass(augstream.TruncatedError, augstream.ProtocolError)
    assert issubclass(augstream.InvalidSpecError, ValueError)
    assert issubclass(augstream.NotFoundError, LookupError)
    assert issubclass(augstream.TooLargeError, augstream.ServerError)
    for name in ("ProtocolError", "ServerError", "ConnectionError", "ConnectionLostError"):
        assert issubclass(getattr(augstream, name), augstream.AugstreamError)
    # Still caught where the built-ins are.
    assert issubclass(augstream.ConnectionError, ConnectionError)
    assert issubclass(augstream.ConnectionLostError, augstream.ConnectionError)


def test_importing_the_client_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, augstream, augstream.wire, augstream.spec;"
        "heavy = [m for m in ('tensorflow', 'keras', 'fastapi', 'cv2', 'starlette', 'uvicorn')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

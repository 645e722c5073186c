"""A Keras ``fit`` whose server process is killed (SIGKILL) mid-epoch and started again on
the same port: the trainer sees one WARNING line and a stall report that names the
recovery, and the fit finishes (issue 17). ``tests/integration/test_recovery.py`` checks the
same lines through a proxy that cuts connections; this one kills the process itself."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from augstream import Client, ImageDataGenerator, RetryPolicy  # noqa: E402
from augstream.keras import InputStallMonitor  # noqa: E402
from tests.recovery import resumed_seconds  # noqa: E402
from tests.reliability.conftest import NO_CACHES, ServerProcess  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]

#: A restart takes seconds (imports): retry that long, quickly.
PATIENT = RetryPolicy(attempts=60, backoff_s=0.05, max_backoff_s=0.5)
#: The kill comes after this many training steps of the first epoch.
KILL_AFTER = 3


class _KillOnce(keras.callbacks.Callback):  # type: ignore[misc]
    """SIGKILLs the server after ``KILL_AFTER`` steps and restarts it from another thread
    (the client's retries run meanwhile)."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__()
        self.server = server
        self.killed = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.killed and batch + 1 == KILL_AFTER:
            self.killed = True
            self.server.kill(signal.SIGKILL)
            threading.Thread(target=self.server.start, daemon=True).start()


def test_a_killed_server_that_comes_back_is_one_warning_and_a_stall_report(
    odd_root: Path,
    server_process: type[ServerProcess],
    caplog: pytest.LogCaptureFixture,
    counts: dict[str, Any],
) -> None:
    # Cold caches and 192 x 192 images: the server is still making the first epoch when it
    # dies (from a warm cache it could have sent it all into the socket buffers already).
    server = server_process(odd_root, **NO_CACHES).start()
    generator = ImageDataGenerator(
        server=Client(server.url, retry=PATIENT, timeout=10), rescale=1 / 255, rotation_range=10
    )
    train = generator.flow_from_directory("odd", target_size=(192, 192), batch_size=4, seed=3)
    model = keras.Sequential(
        [
            keras.Input((192, 192, 3)),
            keras.layers.AveragePooling2D(8),
            keras.layers.Flatten(),
            keras.layers.Dense(3, "softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    printed: list[str] = []
    monitor = InputStallMonitor(print_fn=printed.append)
    killer = _KillOnce(server)
    try:
        with caplog.at_level(logging.INFO, logger="augstream"):
            history = model.fit(train, epochs=4, verbose=0, callbacks=[killer, monitor])
    finally:
        train.close()
    assert killer.killed and server.starts == 2
    assert len(history.history["loss"]) == 4  # the fit went on to its end
    records = [r for r in caplog.records if r.name == "augstream"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    took = resumed_seconds(warnings[0], server.url)
    assert not [r for r in records if r.levelno >= logging.ERROR]
    [hit] = [row for row in monitor.history if row["recoveries"]]
    assert hit["recoveries"] == 1  # in the epoch Keras was at (its reading runs ahead)
    assert hit["recovery_seconds"] == pytest.approx(took, abs=0.1)
    reports = [line for line in printed if line.startswith("augstream: epoch ")]
    assert len(reports) == 4 and sum("1 reconnect (" in line for line in reports) == 1
    counts.update(kill_after_steps=KILL_AFTER, recovery_s=took, server_starts=server.starts)

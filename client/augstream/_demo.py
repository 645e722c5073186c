"""``augstream demo``: train the lecture's CNN on handwritten digits through a local server.

The data set is scikit-learn's handwritten digits (shipped with scikit-learn, nothing is
downloaded), written once as 28x28 grayscale PNG class folders split into train, valid and
test, as a lab's image folders would be. A server is started on a free loopback port; the
model trains on its streams and is tested on its streams; then the lab experiment measures
what a random horizontal flip does at test time only, and at training and test time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo", "write_digits"]

SPLITS = {"train": 0.7, "valid": 0.15, "test": 0.15}
SIZE = 28


def write_digits(root: Path) -> dict[str, Path]:
    """Write the 1,797 digits as ``root/digits-<split>/<label>/<n>.png`` (once); return the
    split folders. Each class is split 70/15/15 in a fixed shuffled order."""
    import cv2
    from sklearn.datasets import load_digits

    folders = {split: root / f"digits-{split}" for split in SPLITS}
    marker = root / ".digits-complete"
    if marker.exists():
        return folders
    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == label))
        n_train = round(SPLITS["train"] * len(members))
        n_valid = round(SPLITS["valid"] * len(members))
        parts = {
            "train": members[:n_train],
            "valid": members[n_train : n_train + n_valid],
            "test": members[n_train + n_valid :],
        }
        for split, indices in parts.items():
            target = folders[split] / str(label)
            target.mkdir(parents=True, exist_ok=True)
            for n in indices:
                pixels = np.round(digits.images[n] * (255 / 16)).astype(np.uint8)
                image = cv2.resize(pixels, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(target / f"{n:04d}.png"), image)
    marker.touch()
    return folders


def _model() -> Any:
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


@contextlib.contextmanager
def _server(folders: list[Path]) -> Iterator[str]:
    """``augstream serve`` in its own process on a free loopback port, as a lab would run it
    (and so the trainer's Python threads do not compete with the server's)."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "augstream._cli", "serve", *map(str, folders),
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


#: Lines TensorFlow's C++ libraries write to stderr as they load, whatever
#: ``TF_CPP_MIN_LOG_LEVEL`` says (absl's logging starts after them): twice each, as two of
#: its libraries load.
_BANNER = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


@contextlib.contextmanager
def _without_banner() -> Iterator[None]:
    """Run the block with file descriptor 2 (where C++ writes) in a temporary file, then pass
    on what it held but TensorFlow's load-time banner."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode(errors="replace")
            lines = text.splitlines(keepends=True)
            sys.stderr.write("".join(x for x in lines if not any(w in x for w in _BANNER)))


def run_demo(epochs: int = 5, out: str = "augstream-demo", verbose: int = 1) -> int:
    """Serve the digits on a loopback port, train through the stream, print the lab table."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _without_banner():
        import keras

    from .generator import ImageDataGenerator
    from .keras import InputStallMonitor

    keras.utils.set_random_seed(0)
    folders = write_digits(Path(out))
    common: dict[str, Any] = dict(target_size=(SIZE, SIZE), color_mode="grayscale", batch_size=32)
    started = time.perf_counter()
    with _server(list(folders.values())) as url:
        names = ", ".join(folder.name for folder in folders.values())
        print(f"augstream server on {url} serving {names}")
        plain = ImageDataGenerator(server=url, rescale=1 / 255)
        flipped = ImageDataGenerator(server=url, rescale=1 / 255, horizontal_flip=True)
        train = plain.flow_from_directory("digits-train", seed=1, **common)
        valid = plain.flow_from_directory("digits-valid", shuffle=False, **common)
        test = plain.flow_from_directory("digits-test", shuffle=False, **common)
        test_flipped = flipped.flow_from_directory("digits-test", shuffle=False, seed=2, **common)
        print(
            f"train {train.samples} images, valid {valid.samples}, test {test.samples}; "
            f"classes {train.class_indices}"
        )

        model = _model()
        model.fit(
            train,
            validation_data=valid,
            epochs=epochs,
            verbose=verbose,
            callbacks=[InputStallMonitor()],
        )
        accuracy = model.evaluate(test, verbose=0)[1]
        print(f"test accuracy: {accuracy:.4f}")

        flip_test_only = model.evaluate(test_flipped, verbose=0)[1]
        print("lab: training again with a random horizontal flip")
        train_flipped = flipped.flow_from_directory("digits-train", seed=1, **common)
        flip_model = _model()
        flip_model.fit(train_flipped, validation_data=valid, epochs=epochs, verbose=verbose)
        flip_both = flip_model.evaluate(test_flipped, verbose=0)[1]
        for iterator in (train, valid, test, test_flipped, train_flipped):
            iterator.close()
    print()
    print("| horizontal flip           | test accuracy |")
    print("|---------------------------|---------------|")
    print(f"| none                      | {accuracy:13.4f} |")
    print(f"| at test time only         | {flip_test_only:13.4f} |")
    print(f"| at training and test time | {flip_both:13.4f} |")
    print(f"\ndone in {time.perf_counter() - started:.0f} s; the server has stopped")
    return 0 if accuracy >= 0.95 else 1

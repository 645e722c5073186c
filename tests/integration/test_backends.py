"""Keras 3's other backends train through augstream's flows without TensorFlow: JAX in CI (its
CPU wheel is small), PyTorch where it is installed (its default wheel brings gigabytes of
CUDA libraries). The same run streams uint8 batches to a model that rescales them itself
(a ``Rescaling`` layer: on a GPU, on the accelerator), and sees a server that stays down end
``fit`` with augstream's own error."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

TRAINER = """
import json, os, sys, time
os.environ["KERAS_BACKEND"] = {backend!r}
import keras
import augstream
from augstream import Client, ImageDataGenerator, RetryPolicy
from augstream.keras import StreamDataset
from tests.proxy import CuttingProxy

# (Not keras.utils.set_random_seed: it seeds TensorFlow too, importing it when installed.)
flow = dict(target_size=(8, 8), batch_size=32, class_mode="binary", seed=1)

def model(scale):
    # Centred on the model's side: Rescaling(1 / 255, offset=-0.5) is what an accelerator
    # runs for uint8 batches.
    built = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Rescaling(scale, offset=-0.5),
        keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid"),
    ])
    built.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return built

# Float batches, rescaled on the server.
train = ImageDataGenerator(server={url!r}, rescale=1 / 255).flow_from_directory("noise", **flow)
started = time.perf_counter()
floats = model(1.0).fit(train, epochs=3, verbose=0).history["accuracy"][-1]
fit_s = time.perf_counter() - started
# uint8 batches, rescaled by the model.
raw = ImageDataGenerator(server={url!r}, dtype="uint8").flow_from_directory("noise", **flow)
first = raw[0][0]
uint8 = model(1 / 255).fit(raw, epochs=3, verbose=0)
# The Client-level PyDataset.
dataset = StreamDataset({url!r}, dataset="noise", rescale=1 / 255, **flow)
plain = model(1.0).fit(dataset, epochs=3, verbose=0).history["accuracy"][-1]
# A server that stays down: the stream breaks after some batches, nothing answers again.
proxy = CuttingProxy({port}, lambda n: 20_000 if n == 0 else 0)
client = Client(proxy.url, retry=RetryPolicy(attempts=1, backoff_s=0.01))
broken = ImageDataGenerator(server=client, rescale=1 / 255).flow_from_directory("noise", **flow)
try:
    model(1.0).fit(broken, epochs=3, verbose=0)
    raised = None
except Exception as exc:
    raised = type(exc).__name__
for it in (train, raw, dataset, broken):
    it.close()
proxy.close()
print(json.dumps({{
    "backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules,
    "floats": floats, "uint8": uint8.history["accuracy"][-1], "plain": plain,
    "dtype": str(first.dtype), "fit_s": fit_s, "raised": raised,
}}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_fit_learns_on_another_backend_without_tensorflow(
    stats_server: LiveServer, backend: str
) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (docs/users/trainer.md: every Keras backend)")
    port = stats_server.url.rsplit(":", 1)[1]
    code = TRAINER.format(backend=backend, url=stats_server.url, port=port)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    print(f"{backend}: {found}")
    assert found["backend"] == backend
    assert not found["tensorflow"]  # trained without importing TensorFlow
    # noise: 150 dark and 150 light images; chance is 0.5.
    assert found["floats"] > 0.9 and found["uint8"] > 0.9 and found["plain"] > 0.9
    assert found["dtype"] == "uint8"
    assert found["raised"] == "ConnectionLostError"  # augstream's own, not wrapped

"""Which part of every epoch this trainer reads when it is one of several data-parallel
workers: given to the front end (``flow_from_directory(..., shard=(index, count))``), or
read from the framework's own environment when it has one.

- JAX, already distributed in this process (``jax.distributed.initialize()``, which Keras'
  ``keras.distribution.initialize()`` calls): ``jax.process_index()`` of
  ``jax.process_count()``. jax is never imported here: only asked when it already is.
- Keras' distribution variables, set before it is initialized:
  ``KERAS_DISTRIBUTION_PROCESS_ID`` of ``KERAS_DISTRIBUTION_NUM_PROCESSES``.
- TensorFlow's ``TF_CONFIG`` (``tf.distribute.MultiWorkerMirroredStrategy``): the task's
  place among the chief and the workers, chief first, as the strategy numbers them.

The front end asks for *equal* shards (``Shard.equal``): every worker runs the same number of
steps an epoch and together they read every sample once (``Shard.drop_remainder`` also makes
every step the same size, leaving out fewer than ``count`` samples an epoch).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from augstream_protocol.fields import Shard

__all__ = ["front_shard", "shard_from_environment"]

log = logging.getLogger("augstream")


def _from_jax() -> tuple[int, int] | None:
    jax: Any = sys.modules.get("jax")
    distributed = getattr(jax, "distributed", None) if jax is not None else None
    initialized = getattr(distributed, "is_initialized", None)
    if initialized is None or not initialized():
        return None
    return int(jax.process_index()), int(jax.process_count())


def _from_tf_config(text: str) -> tuple[int, int] | None:
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError):
        return None
    if kind == "chief":
        return 0, chiefs + workers
    if kind == "worker":
        return chiefs + index, chiefs + workers
    return None  # a parameter server or an evaluator trains on no shard


def shard_from_environment(
    environ: Mapping[str, str] | None = None,
) -> tuple[tuple[int, int], str] | None:
    """This process's ``(index, count)`` among the workers of a data-parallel job, and
    where it was read; None when nothing says this process is one of several."""
    env = os.environ if environ is None else environ
    found = _from_jax()
    if found is not None:
        return found, "jax.process_index()"
    if "KERAS_DISTRIBUTION_NUM_PROCESSES" in env and "KERAS_DISTRIBUTION_PROCESS_ID" in env:
        try:
            count = int(env["KERAS_DISTRIBUTION_NUM_PROCESSES"])
            index = int(env["KERAS_DISTRIBUTION_PROCESS_ID"])
        except ValueError:
            pass
        else:
            return (index, count), "KERAS_DISTRIBUTION_PROCESS_ID"
    if env.get("TF_CONFIG"):
        found = _from_tf_config(env["TF_CONFIG"])
        if found is not None:
            return found, "TF_CONFIG"
    return None


def front_shard(given: Any) -> Shard | dict[str, Any] | None:
    """The shard a front-end flow streams (the spec's ``shard``, checked with the rest of
    it): ``given`` (``(index, count)``, or a ``Shard`` as it is), else the framework's
    environment's; equal shards. None: the whole epoch (leave the field unset)."""
    if isinstance(given, Shard):
        return given
    if isinstance(given, Mapping):
        return dict(given)
    source = "given"
    if given is None:
        found = shard_from_environment()
        if found is None or found[0][1] <= 1:
            return None
        given, source = found
    index, count = given
    if source != "given":
        log.info("augstream: this worker reads shard %d of %d (from %s)", index, count, source)
    return {"index": index, "count": count, "equal": count > 1}

"""``as_dataset``: a stream as a ``tf.data.Dataset`` (imports TensorFlow; ``augstream`` alone
does not)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ._recovery import told
from .stream import Stream

__all__ = ["as_dataset"]


def _spec(entry: dict[str, Any]) -> tf.TensorSpec:
    return tf.TensorSpec(shape=tuple(entry["shape"]), dtype=tf.as_dtype(entry["dtype"]))


def as_dataset(stream: Stream) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of the stream's batches, with its ``output_signature`` taken
    from the stream header (batch dimension unknown: the last batch of an epoch is short).

    Elements are what Keras' iterators yield: ``(x, y)``, ``(x, x)`` for
    ``class_mode='input'``, ``(x, (y0, y1, ...))`` for ``'multi_output'``, with the sample
    weights as a third element when the stream has them, or ``x`` alone without labels. The
    dataset ends when a finite stream ends.

    A sharded stream (one worker's part of each epoch, ``shard``) is marked as sharded
    already: ``tf.distribute`` (``MultiWorkerMirroredStrategy``) would otherwise shard it
    again by elements, keeping one batch in ``count`` of each worker's.
    """
    arrays = stream.header.arrays
    x = _spec(arrays["x"])
    outputs = sorted(
        (k for k in arrays if k[:1] == "y" and k[1:].isdigit()), key=lambda k: int(k[1:])
    )
    y: Any = None
    if stream.spec.class_mode == "input":
        y = x
    elif outputs:
        y = tuple(_spec(arrays[name]) for name in outputs)
    elif "y" in arrays:
        y = _spec(arrays["y"])
    signature: Any = x if y is None else (x, y)
    if y is not None and "w" in arrays:
        signature = (x, y, _spec(arrays["w"]))

    def generate() -> Any:
        while True:
            try:
                batch = told(stream.next_batch)
            except StopIteration:
                return
            element = batch.as_keras()
            if isinstance(batch.y, list):  # tf.data nests tuples, not lists
                element = (element[0], tuple(batch.y), *element[2:])
            yield element

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if stream.spec.shard.count > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset

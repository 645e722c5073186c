"""``as_dataset``: a stream as a ``tf.data.Dataset`` (imports TensorFlow; ``augstream`` alone
does not)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .stream import Stream

__all__ = ["as_dataset"]


def _spec(entry: dict[str, Any]) -> tf.TensorSpec:
    return tf.TensorSpec(shape=tuple(entry["shape"]), dtype=tf.as_dtype(entry["dtype"]))


def as_dataset(stream: Stream) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of the stream's batches, with its ``output_signature`` taken
    from the stream header (batch dimension unknown: the last batch of an epoch is short).

    Elements are ``(x, y)``, ``(x, x)`` for ``class_mode='input'`` or ``x`` alone for
    ``'none'``; the dataset ends when a finite stream ends.
    """
    arrays = stream.header.arrays
    x = _spec(arrays["x"])
    signature: Any
    if stream.spec.class_mode == "input":
        signature = (x, x)
    elif "y" in arrays:
        signature = (x, _spec(arrays["y"]))
    else:
        signature = x

    def generate() -> Any:
        while True:
            try:
                batch = stream.next_batch()
            except StopIteration:
                return
            yield batch.as_keras()

    return tf.data.Dataset.from_generator(generate, output_signature=signature)

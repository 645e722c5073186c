"""The tools users would pick instead, doing the comparison's work: Keras' legacy
``ImageDataGenerator``, tf.data with Keras preprocessing layers, and tf.data service.

Each returns an endless iterator of float32 NumPy batches, as a training loop receives them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .work import BATCH, ROTATION, SHIFT, SIZE, ZOOM

__all__ = ["keras_image_data_generator", "tf_data", "tf_data_service"]

Array = np.ndarray[Any, Any]


def keras_image_data_generator(root: Path) -> Iterator[Array]:
    """(a) ``ImageDataGenerator.flow_from_directory``: PIL decodes, SciPy warps, one thread."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(
        rotation_range=ROTATION,
        width_shift_range=SHIFT,
        height_shift_range=SHIFT,
        zoom_range=ZOOM,
        horizontal_flip=True,
        rescale=1 / 255,
    )
    flow = generator.flow_from_directory(
        str(root), target_size=(SIZE, SIZE), batch_size=BATCH, seed=1
    )
    for x, _ in flow:
        yield x


def _augmented_dataset(root: Path) -> Any:
    import keras
    import tensorflow as tf

    augment = keras.Sequential(
        [
            keras.layers.RandomRotation(ROTATION / 360, fill_mode="nearest"),
            keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="nearest"),
            keras.layers.RandomZoom(ZOOM, fill_mode="nearest"),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.Rescaling(1 / 255),
        ]
    )
    dataset = keras.utils.image_dataset_from_directory(
        str(root),
        image_size=(SIZE, SIZE),
        batch_size=BATCH,
        interpolation="nearest",
        label_mode="categorical",
        seed=1,
        verbose=False,
    )
    return (
        dataset.repeat()
        .map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _numpy(dataset: Any) -> Iterator[Array]:
    for x, _ in dataset:
        yield x.numpy()


def tf_data(root: Path) -> Iterator[Array]:
    """(b) ``image_dataset_from_directory`` + Keras augmentation layers, AUTOTUNE."""
    return _numpy(_augmented_dataset(root))


@contextmanager
def _local_service() -> Iterator[str]:
    import tensorflow as tf

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
    try:
        yield dispatcher.target
    finally:
        worker.stop()
        dispatcher.stop()


def tf_data_service(root: Path) -> tuple[AbstractContextManager[str], Any]:
    """(c) tf.data service: (b)'s pipeline run by a local dispatcher and one worker.

    Returns the service (a context manager giving its address) and a function of the
    address that gives the batches.
    """
    import tensorflow as tf

    def batches(target: str) -> Iterator[Array]:
        distributed = _augmented_dataset(root).apply(
            tf.data.experimental.service.distribute(
                processing_mode="parallel_epochs", service=target
            )
        )
        return _numpy(distributed)

    return _local_service(), batches

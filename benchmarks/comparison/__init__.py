"""``augstream bench --compare``: augstream against the tools users would pick instead.

One run on one machine measures the same work (decode, resize to 224x224, rotation 20,
shifts 0.1, zoom 0.1, horizontal flip, rescale 1/255, float32 batches of 32 in the caller's
hands) done by Keras' legacy ``ImageDataGenerator``, tf.data with Keras preprocessing layers,
tf.data service, augstream's pipeline in process, and augstream served over loopback HTTP
(cold and warm), plus the transport alone next to a raw socket. Every contender is measured
``--rounds`` times, in turn, and the medians are compared: on a shared machine one
measurement can be off by tens of percent. Absolute figures depend on the machine; the
ratios are the point.
"""

from .run import main

__all__ = ["main"]

"""Dataset statistics (Keras' ``fit``): the request ``POST /v1/stats`` takes and its answer,
shared by the client and the server like the stream spec."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .fields import StatsRefs
from .spec import StreamSpec

__all__ = ["DatasetStats", "StatsRequest"]


class StatsRequest(BaseModel):
    """Compute featurewise statistics of what ``spec`` reads, as Keras'
    ``fit(x, augment, rounds, seed)`` computes them on ``x``.

    The sample is the spec's images (dataset or uploaded arrays, with its ``classes`` and
    ``subset``), decoded at its ``target_size`` and ``color_mode``, multiplied by its
    ``rescale`` (as Keras' ``fit`` does; sample-wise normalisation is not applied, as in
    Keras), and with ``augment`` transformed ``rounds`` times by the spec's random
    augmentation, drawn from ``seed``. ``sample_size`` takes that many images (drawn from
    ``seed``) instead of all. The per-channel mean and std are always computed (digests are
    given for those the spec's flags apply, as Keras' ``fit`` sets only those); the ZCA
    matrix when the spec sets ``zca_whitening``. The spec's stream fields (batch size,
    shuffle, its own seed, start, shard, epochs, dtype) play no part.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: StreamSpec
    augment: bool = False
    rounds: Annotated[int, Field(ge=1, le=1000)] = 1
    #: Draws the augmentation and the sample; unset means 0, so a fit is reproducible.
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    sample_size: Annotated[int, Field(ge=1)] | None = None
    zca_epsilon: Annotated[float, Field(gt=0, le=1e6)] = 1e-6

    def request_body(self) -> dict[str, Any]:
        """The request as the JSON body of ``POST /v1/stats`` (defaults left out)."""
        body = self.model_dump(mode="json", exclude_defaults=True, exclude={"spec"})
        return {"spec": self.spec.request_body(), **body}


class DatasetStats(BaseModel):
    """What ``POST /v1/stats`` answers: the statistics' values and the digests under which the
    server stored them (``stats``, ready for a spec's ``stats`` field)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Images the statistics were computed on (sample x rounds).
    samples: int
    #: Per-channel mean and standard deviation (Keras' ``mean`` and ``std`` hold them as
    #: 1 x 1 x C arrays).
    mean: list[float]
    std: list[float]
    #: Digests of the stored arrays the spec's flags apply (``featurewise_center``: ``mean``,
    #: ``featurewise_std_normalization``: ``std``, ``zca_whitening``: the ZCA matrix).
    stats: StatsRefs
    #: Side of the ZCA matrix (height x width x channels), or None.
    zca_features: int | None = None
    #: True when the server had computed these statistics before (nothing was read).
    cached: bool = False

    def mean_array(self) -> np.ndarray[Any, Any]:
        """The mean as Keras' ``ImageDataGenerator.mean``: float32, 1 x 1 x C."""
        return np.asarray(self.mean, dtype=np.float32).reshape(1, 1, -1)

    def std_array(self) -> np.ndarray[Any, Any]:
        """The std as Keras' ``ImageDataGenerator.std``: float32, 1 x 1 x C."""
        return np.asarray(self.std, dtype=np.float32).reshape(1, 1, -1)

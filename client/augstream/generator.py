"""A drop-in, server-backed ``ImageDataGenerator`` with Keras' legacy signatures.

Augmentation runs on the augstream server; the iterators it returns work in
``model.fit`` (they are Keras ``PyDataset``s) and as endless ``next()`` iterators. This
module holds its construction, ``fit`` and the client; the three flows are in ``_flows``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from augstream_protocol.spec import StreamSpec

from . import _fit
from ._exceptions import InvalidSpecError
from ._flows import COLOR_MODES, Flows
from ._invalid import spec_from, suggest, unknown_keywords
from .client import Client

if TYPE_CHECKING:
    from .keras import RemoteIterator

__all__ = ["ImageDataGenerator"]

_AUGMENTATION = (
    "rotation_range",
    "width_shift_range",
    "height_shift_range",
    "brightness_range",
    "shear_range",
    "zoom_range",
    "channel_shift_range",
    "fill_mode",
    "cval",
    "horizontal_flip",
    "vertical_flip",
    "interpolation_order",
    "validation_split",
)
#: augstream's operations beyond Keras' (keyword-only arguments of the constructor).
OPERATIONS = (
    "mask_cval",
    "random_crop_fraction",
    "random_resized_crop_scale",
    "random_resized_crop_ratio",
    "erasing_probability",
    "erasing_scale",
    "erasing_ratio",
    "erasing_value",
    "contrast_range",
    "saturation_range",
    "hue_shift_range",
    "grayscale_probability",
    "blur_sigma_range",
    "noise_std_range",
    "jpeg_quality_range",
    "mixup_alpha",
    "cutmix_alpha",
)


class ImageDataGenerator(Flows):
    """Keras' ``ImageDataGenerator``, with the work done by an augstream server.

    Takes the legacy constructor's arguments (same names, same defaults) plus ``server``
    (a URL, a list of replicas' URLs, or a ``Client``; default: the ``AUGSTREAM_URL``
    environment variable), ``api_key`` and ``compat``
    (``"documented"``, the default, or ``"keras-legacy"`` to reproduce the legacy
    implementation's quirks), and augstream's own operations by keyword (``OPERATIONS``:
    crops, erasing, colour jitter, blur, noise, JPEG quality, mixup, cutmix; see the README).
    ``flow_from_directory``'s ``directory`` names a dataset the server offers;
    ``class_mode="mask"`` streams its image + mask pairs (see the README).
    """

    def __init__(
        self,
        featurewise_center: bool = False,
        samplewise_center: bool = False,
        featurewise_std_normalization: bool = False,
        samplewise_std_normalization: bool = False,
        zca_whitening: bool = False,
        zca_epsilon: float = 1e-6,
        rotation_range: float = 0,
        width_shift_range: float | int | list[float] = 0.0,
        height_shift_range: float | int | list[float] = 0.0,
        brightness_range: tuple[float, float] | list[float] | None = None,
        shear_range: float = 0.0,
        zoom_range: float | tuple[float, float] | list[float] = 0.0,
        channel_shift_range: float = 0.0,
        fill_mode: str = "nearest",
        cval: float = 0.0,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        rescale: float | None = None,
        preprocessing_function: Callable[[np.ndarray[Any, Any]], Any] | None = None,
        data_format: str | None = None,
        validation_split: float = 0.0,
        interpolation_order: int = 1,
        dtype: str | None = None,
        *,
        server: str | Sequence[str] | Client | None = None,
        api_key: str | None = None,
        compat: Literal["documented", "keras-legacy"] = "documented",
        **operations: Any,
    ) -> None:
        unknown = set(operations) - set(OPERATIONS)
        if unknown:
            known = [*inspect.signature(ImageDataGenerator).parameters, *OPERATIONS]
            raise unknown_keywords("ImageDataGenerator()", unknown, known)
        if data_format not in (None, "channels_last", "channels_first"):
            choices = ("channels_last", "channels_first")
            raise InvalidSpecError(
                f"data_format must be 'channels_last' or 'channels_first', got "
                f"{data_format!r}{suggest(str(data_format), choices)}",
                fields=("data_format",),
                caught_by="client",
            )
        self._server = server
        self._api_key = api_key
        self.preprocessing_function = preprocessing_function
        self.data_format = data_format
        self.dtype = dtype
        self.rescale = rescale
        self.samplewise_center = samplewise_center or samplewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        (
            self.featurewise_center,
            self.featurewise_std_normalization,
            self.zca_whitening,
        ) = _fit.resolve_flags(featurewise_center, featurewise_std_normalization, zca_whitening)
        self.zca_epsilon = zca_epsilon
        #: Keras' statistics, set by ``fit`` (or by hand: precomputed ones are sent as given).
        self.mean: np.ndarray[Any, Any] | None = None
        self.std: np.ndarray[Any, Any] | None = None
        self.zca_whitening_matrix: np.ndarray[Any, Any] | None = None
        values = locals()
        self._augmentation: dict[str, Any] = {name: values[name] for name in _AUGMENTATION}
        if isinstance(zoom_range, list):
            self._augmentation["zoom_range"] = tuple(zoom_range)
        self._augmentation["compat"] = compat
        self._augmentation.update(operations)
        # Validate now, so a typo fails at construction with the field named, as in Keras.
        self._spec_fields(dataset="validation-only")

    def _client(self) -> Client:
        if isinstance(self._server, Client):
            return self._server
        url = self._server or os.environ.get("AUGSTREAM_URL")
        if not url:
            raise ValueError("no server: pass ImageDataGenerator(server=URL) or set AUGSTREAM_URL")
        return Client(url, api_key=self._api_key)

    def _standardise_on_client(self) -> bool:
        # preprocessing_function runs before rescale and normalisation (Keras' order), and it
        # can only run here, so then those run here too.
        return self.preprocessing_function is not None

    def _spec_fields(self, **fields: Any) -> StreamSpec:
        standardisation: dict[str, Any] = {}
        if not self._standardise_on_client():
            standardisation = {
                "rescale": self.rescale,
                "samplewise_center": self.samplewise_center,
                "samplewise_std_normalization": self.samplewise_std_normalization,
                **{flag: getattr(self, flag) for _, flag in _fit.STATS},
            }
        dtype = "uint8" if self.dtype == "uint8" else "float32"
        return spec_from({**self._augmentation, **standardisation, "dtype": dtype, **fields})

    def _postprocess(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        assert self.preprocessing_function is not None
        x = np.stack([np.asarray(self.preprocessing_function(image)) for image in x])
        x = x.astype(np.float32, copy=False)
        if self.rescale:
            x = x * np.float32(self.rescale)
        if self.samplewise_center:
            x = x - x.mean(axis=(1, 2, 3), keepdims=True)
        if self.samplewise_std_normalization:
            x = x / (x.std(axis=(1, 2, 3), keepdims=True) + np.float32(1e-6))
        return _fit.apply_featurewise(self, x)

    def fit(
        self,
        x: Any,
        augment: bool = False,
        rounds: int = 1,
        seed: int | None = None,
        *,
        target_size: tuple[int, int] = (256, 256),
        color_mode: str = "rgb",
        classes: list[str] | None = None,
        subset: str | None = None,
        interpolation: str = "nearest",
        keep_aspect_ratio: bool = False,
        sample_size: int | None = None,
    ) -> None:
        """Keras' ``fit``: compute the statistics featurewise standardisation needs, on the
        server, and set ``mean``, ``std`` and ``zca_whitening_matrix``.

        ``x`` names a dataset on the server (read as ``flow_from_directory`` would, with
        ``target_size`` and the other keywords), or is a rank-4 array of images (uploaded
        once, as ``flow`` uploads). ``augment``, ``rounds`` and ``seed`` mean what they mean
        in Keras (an unset seed is 0: fits are reproducible); ``sample_size`` fits on that
        many images drawn from ``seed``. The server caches the result, so fitting again is
        cheap.
        """
        if not (self.featurewise_center or self.zca_whitening):
            return  # nothing to compute, as in Keras
        client = self._client()
        if isinstance(x, str):
            source: dict[str, Any] = {
                "dataset": x,
                "target_size": tuple(target_size),
                "color_mode": color_mode,
                "classes": classes,
                "subset": subset,
                "interpolation": interpolation,
                "keep_aspect_ratio": keep_aspect_ratio,
            }
        else:
            images = np.asarray(x)
            if images.ndim != 4:
                raise ValueError(
                    f"Input to `.fit()` should have rank 4. Got array with shape: {images.shape}"
                )
            if self._channels_first():
                images = images.transpose(0, 2, 3, 1)
            if images.shape[3] not in COLOR_MODES:
                raise ValueError(f"images must have 1, 3 or 4 channels, got shape {images.shape}")
            source = {
                "arrays": {"x": client.upload(images)},
                "target_size": images.shape[1:3],
                "color_mode": COLOR_MODES[images.shape[3]],
            }
        # Keras' fit applies rescale but not the sample-wise steps (nor preprocessing_function).
        spec = spec_from(
            {
                **self._augmentation,
                "rescale": self.rescale,
                **{flag: getattr(self, flag) for _, flag in _fit.STATS},
                "class_mode": "none",
                **source,
            }
        )
        result = client.stats(
            spec,
            augment=augment,
            rounds=rounds,
            seed=seed,
            sample_size=sample_size,
            zca_epsilon=self.zca_epsilon,
        )
        if self.featurewise_center:
            self.mean = result.mean_array()
        if self.featurewise_std_normalization:
            self.std = result.std_array()
        if self.zca_whitening:
            digest = result.stats.zca_whitening_matrix
            assert digest is not None  # asked for with the spec's zca_whitening
            self.zca_whitening_matrix = client.download(digest)

    def _iterator(self, client: Client, spec: StreamSpec) -> RemoteIterator:
        from .keras import RemoteIterator  # Keras is imported only when it is needed

        cast = None if self.dtype in (None, "float32", "uint8") else str(np.dtype(self.dtype))
        if self._standardise_on_client():
            _fit.check_fitted(self)
        elif self.featurewise_center:
            spec = spec_from({**spec.model_dump(), "stats": _fit.stats_refs(self, client)})
        return RemoteIterator(
            client,
            spec,
            postprocess=self._postprocess if self._standardise_on_client() else None,
            channels_first=self._channels_first(),
            cast=cast,
        )

    def _channels_first(self) -> bool:
        if self.data_format is not None:
            return self.data_format == "channels_first"
        import keras

        return bool(keras.config.image_data_format() == "channels_first")

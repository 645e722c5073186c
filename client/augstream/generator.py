"""A drop-in, server-backed ``ImageDataGenerator`` with Keras' legacy signatures.

Augmentation runs on the augstream server; the iterators it returns work in
``model.fit`` (they are Keras ``PyDataset``s) and as endless ``next()`` iterators.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .client import Client
from .spec import StreamSpec

if TYPE_CHECKING:
    from .keras import RemoteIterator

__all__ = ["ImageDataGenerator"]

_NOT_YET = {
    "featurewise_center": "needs dataset statistics computed by fit()",
    "featurewise_std_normalization": "needs dataset statistics computed by fit()",
    "zca_whitening": "needs a whitening matrix computed by fit()",
}
_AUGMENTATION = (
    "rotation_range", "width_shift_range", "height_shift_range", "brightness_range",
    "shear_range", "zoom_range", "channel_shift_range", "fill_mode", "cval",
    "horizontal_flip", "vertical_flip", "interpolation_order", "validation_split",
)  # fmt: skip


class ImageDataGenerator:
    """Keras' ``ImageDataGenerator``, with the work done by an augstream server.

    Takes the legacy constructor's arguments (same names, same defaults) plus ``server``
    (default: the ``AUGSTREAM_URL`` environment variable), ``api_key`` and ``compat``
    (``"documented"``, the default, or ``"keras-legacy"`` to reproduce the legacy
    implementation's quirks). ``flow_from_directory``'s ``directory`` names a dataset the
    server offers.
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
        server: str | Client | None = None,
        api_key: str | None = None,
        compat: Literal["documented", "keras-legacy"] = "documented",
    ) -> None:
        for name, why in _NOT_YET.items():
            if locals()[name]:
                raise ValueError(f"{name}=True is not supported yet: it {why}")
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
            )
        self._server = server
        self._api_key = api_key
        self.preprocessing_function = preprocessing_function
        self.data_format = data_format
        self.dtype = dtype
        self.rescale = rescale
        self.samplewise_center = samplewise_center or samplewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        values = locals()
        self._augmentation: dict[str, Any] = {name: values[name] for name in _AUGMENTATION}
        if isinstance(zoom_range, list):
            self._augmentation["zoom_range"] = tuple(zoom_range)
        self._augmentation["compat"] = compat
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
            }
        dtype = "uint8" if self.dtype == "uint8" else "float32"
        return StreamSpec.model_validate(
            {**self._augmentation, **standardisation, "dtype": dtype, **fields}
        )

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
        return x

    def flow_from_directory(
        self,
        directory: str,
        target_size: tuple[int, int] = (256, 256),
        color_mode: str = "rgb",
        classes: list[str] | None = None,
        class_mode: str | None = "categorical",
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        save_to_dir: str | None = None,
        save_prefix: str = "",
        save_format: str = "png",
        follow_links: bool = False,
        subset: str | None = None,
        interpolation: str = "nearest",
        keep_aspect_ratio: bool = False,
    ) -> RemoteIterator:
        """Batches from the server's dataset ``directory``, as Keras' method of that name.

        ``directory`` is a dataset name (``augstream serve /data/cats`` offers ``cats``).
        """
        if save_to_dir is not None:
            raise ValueError("save_to_dir is not supported: the images live on the server")
        if follow_links:
            raise ValueError("follow_links=True is not supported: the server decides on links")
        del save_prefix, save_format
        if "/" in directory or os.sep in directory:
            raise ValueError(
                f"directory names a dataset on the server, not a path; got {directory!r}"
            )
        from .keras import RemoteIterator  # Keras is imported only when it is needed

        client = self._client()
        spec = self._spec_fields(
            dataset=directory,
            target_size=tuple(target_size),
            color_mode=color_mode,
            classes=classes,
            class_mode="none" if class_mode is None else class_mode,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            subset=subset,
            interpolation=interpolation,
            keep_aspect_ratio=keep_aspect_ratio,
        )
        cast = None if self.dtype in (None, "float32", "uint8") else str(np.dtype(self.dtype))
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

"""Server settings, read from arguments and ``AUGSTREAM_*`` environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .catalog import DatasetConfig
from .cores import allowed_cores, default_processes
from .limits import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from .memory import default_budget

__all__ = ["Settings", "load_settings", "sizing", "worker_threads"]


def _default_upload_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "augstream" / "uploads"


def _default_threads() -> int:
    return allowed_cores()


class Settings(BaseSettings):
    """Everything the server can be told. Built once and passed to ``create_app``."""

    model_config = SettingsConfigDict(
        env_prefix="AUGSTREAM_", env_nested_delimiter="__", extra="forbid"
    )

    datasets: list[Path] = Field(
        default_factory=list, description="Folders to serve, one dataset each"
    )
    #: Datasets by name: stores (folders, buckets, web servers) with their options.
    catalog: dict[str, DatasetConfig] = Field(default_factory=dict)
    #: Shared by every stream: files' bytes, and decoded images at their target size.
    byte_cache_bytes: Annotated[int, Field(ge=0)] = 256 << 20
    image_cache_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    #: Finished batches, shared by identical streams (a sweep, validation streams); 0: off.
    batch_cache_bytes: Annotated[int, Field(ge=0)] = 512 << 20
    #: Worker threads: one per core the process may use (its affinity and the container's
    #: CPU quota).
    threads: Annotated[int, Field(ge=1, le=256)] = Field(default_factory=_default_threads)
    #: Worker processes that make the batches' samples, each with its own GIL and its share
    #: of the caches (0: the threads make them). Default: one per 4 allowed cores from 8
    #: cores on, 0 below (docs/performance.md, "A big box").
    processes: Annotated[int, Field(ge=0, le=256)] = Field(default_factory=default_processes)
    #: Threads in each worker process (default: ``threads`` shared out over ``processes``).
    #: A batch's samples go to the workers that own them, one message each way per worker,
    #: so fewer workers with more threads cost the server process fewer messages per batch.
    worker_threads: Annotated[int, Field(ge=1, le=64)] | None = None
    #: Server processes on this box (``augstream serve --servers``), on consecutive ports,
    #: each with its share of the threads, worker processes, caches and memory budget; a
    #: client spreads each stream over all of them (``siblings``). 1: this process alone.
    servers: Annotated[int, Field(ge=1, le=64)] = 1
    #: The ports of this box's server processes, this one's among them (``serve --servers``
    #: sets it), told at ``GET /v1/server`` so clients spread streams over them.
    sibling_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    prefetch: Annotated[int, Field(ge=1, le=64)] = 4
    max_streams: Annotated[int, Field(ge=1)] = 64
    #: Streams one API key (or, without keys, one client address) may run at once.
    max_streams_per_key: Annotated[int, Field(ge=1)] | None = 16
    #: The bytes every stream, preview, fit, upload and cache of the server draws from
    #: before it allocates (what does not fit gets a 503 naming it; the caches shrink
    #: first). Default: 3/4 of the container's memory limit, or of the machine's memory.
    memory_budget_bytes: Annotated[int, Field(ge=1 << 20)] = Field(default_factory=default_budget)
    #: The most of the memory budget one API key (or, without keys, one client address) may
    #: hold at once.
    max_memory_share_per_key: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: Each API key's share of the workers, in the order of ``api_keys`` (a key not listed
    #: weighs 1): while several keys are busy, each gets workers in proportion to its weight.
    key_weights: list[Annotated[float, Field(gt=0, le=1000)]] = Field(default_factory=list)
    #: Previews (``GET /v1/preview``) and fits (``POST /v1/stats``) running at once, in all
    #: and per key (or address); more wait ``admission_wait_s``, then get a 503 (429 per
    #: key) with ``Retry-After``.
    max_previews: Annotated[int, Field(ge=1)] = 8
    max_previews_per_key: Annotated[int, Field(ge=1)] | None = 4
    max_fits: Annotated[int, Field(ge=1)] = 4
    max_fits_per_key: Annotated[int, Field(ge=1)] | None = 2
    #: How long a preview or fit over those caps waits for its turn (no thread held) before
    #: its 503 or 429.
    admission_wait_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    #: The most worker threads previews, and fits, may use at once (default: a quarter of
    #: ``threads``, at least 1); together they always leave streams one worker.
    preview_workers: Annotated[int, Field(ge=1)] | None = None
    fit_workers: Annotated[int, Field(ge=1)] | None = None
    max_batch_bytes: Annotated[int, Field(ge=1)] = 256 << 20
    max_file_bytes: Annotated[int, Field(ge=1)] = 64 << 20
    #: What streams do with an image that cannot be read or decoded: end with an error
    #: frame naming it ("error"), or leave it out and report it in its batch ("skip").
    on_corrupt: Literal["error", "skip"] = "error"
    #: Per-dataset exceptions to ``on_corrupt``, e.g. {"scraped-photos": "skip"}.
    on_corrupt_by_dataset: dict[str, Literal["error", "skip"]] = Field(default_factory=dict)
    #: Images declaring more pixels are refused before they are decoded.
    max_image_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_IMAGE_PIXELS
    #: Images declaring more decoded bytes (width x height x channels x bytes per channel:
    #: a 16-bit RGBA PNG costs 8 bytes a pixel) are refused before they are decoded.
    max_image_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_IMAGE_BYTES
    #: Dataset statistics (POST /v1/stats, ImageDataGenerator.fit): images read per fit
    #: (sample x rounds), and features (height x width x channels) of a ZCA matrix.
    max_fit_images: Annotated[int, Field(ge=1)] = 100_000
    max_zca_features: Annotated[int, Field(ge=1, le=16384)] = 4096
    #: "portable" pins OpenCV, numpy and OpenBLAS to their baseline CPU code paths and turns
    #: IPP off, so replicas on different CPUs make the same bytes (README, cluster); the
    #: process must start with them (``augstream serve`` restarts itself to).
    numerics: Literal["native", "portable"] = "native"
    heartbeat_s: Annotated[float, Field(gt=0)] = 2.0
    #: A stream's client that takes nothing for this long is disconnected, and so is one
    #: that reads slower than ``min_read_rate`` for about as long (it resumes at its next
    #: batch, as after any lost connection).
    send_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    #: Bytes per second a stream's client must read at, on average, while the server has
    #: batches for it (16 KiB/s: far below any network a trainer sits on).
    min_read_rate: Annotated[int, Field(ge=1)] = 16 << 10
    #: Seconds a connection has to send a request's line and headers, from when it opens or
    #: its previous response ends; then it gets a 408 and is closed.
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    #: A request body (an upload, a spec) that arrives slower than ``min_body_rate`` for
    #: this many seconds, or stops for as long, gets a 408 and its connection is closed.
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    #: Bytes per second a request body must arrive at, on average.
    min_body_rate: Annotated[int, Field(ge=1)] = 16 << 10
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys clients must send as 'Authorization: Bearer <key>' (none: open)",
    )
    admin_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys that may also do what empties the shared caches "
        "(POST /v1/datasets/{name}/refresh); with keys, no other key may. They are API "
        "keys too",
    )
    upload_dir: Path = Field(
        default_factory=_default_upload_dir,
        description="Where uploaded arrays are kept (content-addressed; survives restarts)",
    )
    max_upload_bytes: Annotated[int, Field(ge=1)] = 2 << 30
    upload_store_bytes: Annotated[int, Field(ge=1)] = 16 << 30

    @model_validator(mode="after")
    def _one_upload_fits(self) -> Settings:
        if self.max_upload_bytes > self.upload_store_bytes:
            raise ValueError(
                f"max_upload_bytes ({self.max_upload_bytes}) must not exceed "
                f"upload_store_bytes ({self.upload_store_bytes})"
            )
        return self


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from, highest first: ``overrides``, ``AUGSTREAM_*`` environment variables,
    the TOML file ``config`` (whose keys are the settings' names; datasets go in
    ``[catalog.NAME]`` tables). Relative paths are relative to the working directory."""
    if config is None:
        return Settings(**overrides)
    try:
        with config.open("rb") as handle:
            tomllib.load(handle)  # for a clear message; pydantic-settings reads it again
    except OSError as exc:
        raise ValueError(f"cannot read {str(config)!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{str(config)!r} is not valid TOML: {exc}") from None

    class FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    return FromFile(**overrides)


def worker_threads(settings: Settings) -> int:
    """Threads in each worker process: the setting, or ``threads`` over ``processes``."""
    if settings.worker_threads is not None:
        return settings.worker_threads
    return max(1, -(-settings.threads // max(1, settings.processes)))


def sizing(settings: Settings) -> dict[str, Any]:
    """What this server process runs with, for ``GET /v1/server``: the cores it may use (its
    affinity and the container's quota), its threads and worker processes, and how many
    server processes share the box (``--servers``), so that an operator can check a running
    pod's as well as its start-up line."""
    return {
        "allowed_cores": allowed_cores(),
        "threads": settings.threads,
        "processes": settings.processes,
        "worker_threads": worker_threads(settings) if settings.processes else None,
        "servers": max(1, len(settings.sibling_ports)),
    }

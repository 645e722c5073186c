"""Thin HTTP routes: validate, look up, hand over to the pipeline."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from starlette.concurrency import run_in_threadpool

from augstream.spec import StreamSpec
from augstream.wire import PROTOCOL_VERSION

from . import __version__
from .catalog import Dataset, DatasetUnavailableError
from .errors import BusyError
from .pipeline import make_plan
from .producer import FrameStreamResponse, stream_frames
from .samples import resolve_samples
from .state import State

__all__ = ["router"]

#: All routes; with API keys, all but /healthz sit behind ``auth.KeyCheck``.
router = APIRouter()


def _info(dataset: Dataset) -> dict[str, Any]:
    listing = dataset.listing
    counts = [int((listing.labels == i).sum()) for i in range(len(listing.class_names))]
    return {
        "name": dataset.name,
        "samples": len(listing.files),
        "class_indices": listing.class_indices,
        "class_counts": dict(zip(listing.class_names, counts, strict=True)),
    }


@router.get("/healthz", summary="Liveness check (needs no key)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/v1/server", summary="Version, protocol, the limits a client must respect, streams running"
)
def server_info(state: State) -> dict[str, Any]:
    settings = state.settings
    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "limits": {
            "max_batch_bytes": settings.max_batch_bytes,
            "max_file_bytes": settings.max_file_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_streams": settings.max_streams,
            "max_streams_per_key": settings.max_streams_per_key,
        },
        "active_streams": state.slots.active,
        "skipped_samples": dict(state.skipped_samples),
    }


@router.get("/v1/datasets", summary="The datasets this server offers")
def list_datasets(state: State) -> dict[str, list[dict[str, Any]]]:
    infos = []
    for name in state.catalog.names():
        # One unavailable dataset must not hide the others; it is logged by the catalog.
        with contextlib.suppress(DatasetUnavailableError):
            infos.append(_info(state.catalog.get(name)))
    return {"datasets": infos}


@router.get("/v1/datasets/{name}", summary="One dataset: sample count and class indices")
def get_dataset(name: str, state: State) -> dict[str, Any]:
    return _info(state.catalog.get(name))


@router.post(
    "/v1/datasets/{name}/refresh",
    summary="List a dataset again (new and replaced files are seen; running streams keep theirs)",
)
def refresh_dataset(name: str, state: State) -> dict[str, Any]:
    state.catalog.get(name).refresh()
    return _info(state.catalog.get(name))


@router.get("/v1/cache", summary="Decodes, store reads, and the shared caches' hits and misses")
def cache_figures(state: State) -> dict[str, Any]:
    return state.reader.figures()


Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the .npy bytes")]


@router.get("/v1/arrays/{digest}", summary="Whether an uploaded array is here, and its shape")
def array_info(state: State, digest: Digest) -> dict[str, Any]:
    return state.uploads.info(digest).as_dict()


@router.put(
    "/v1/arrays/{digest}",
    summary="Upload one array in .npy format, named by its SHA-256",
    status_code=201,
)
async def upload_array(state: State, digest: Digest, request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    info = await state.uploads.put(
        digest, request.stream(), int(length) if length and length.isdigit() else None
    )
    return info.as_dict()


@router.post("/v1/files", summary="The files and labels a spec streams from, in sample-id order")
def list_files(state: State, spec: Annotated[StreamSpec, Body()]) -> dict[str, Any]:
    source = resolve_samples(spec, state.catalog, state.uploads, state.limits, state.reader)
    return {
        "class_indices": {name: i for i, name in enumerate(source.class_names)},
        **source.listing(),
    }


@router.post(
    "/v1/stream",
    summary="Stream augmented batches as wire-protocol v1 frames",
    response_class=FrameStreamResponse,
    status_code=200,
)
async def stream(
    state: State, spec: Annotated[StreamSpec, Body()], request: Request
) -> FrameStreamResponse:
    plan = await run_in_threadpool(
        make_plan,
        spec,
        state.catalog,
        state.uploads,
        state.limits,
        state.reader,
        state.count_skipped,
    )
    refusal = state.slots.refusal(request.state.owner)
    if refusal is not None:
        raise BusyError(*refusal)
    release = state.slots.acquire(request.state.owner)
    frames = stream_frames(
        plan,
        state.pool,
        prefetch=state.settings.prefetch,
        heartbeat_s=state.settings.heartbeat_s,
        draining=lambda: state.draining,
    )
    return FrameStreamResponse(
        frames, on_close=release, send_timeout_s=state.settings.send_timeout_s
    )

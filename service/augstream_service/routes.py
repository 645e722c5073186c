"""Thin HTTP routes: validate, look up, hand over to the pipeline."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from augstream.spec import StreamSpec

from .catalog import Dataset, DatasetUnavailableError
from .errors import BusyError
from .pipeline import make_plan, resolve_listing
from .producer import FrameStreamResponse, stream_frames
from .state import State

__all__ = ["router"]

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


@router.post("/v1/files", summary="The files and labels a spec streams from, in sample-id order")
def list_files(state: State, spec: Annotated[StreamSpec, Body()]) -> dict[str, Any]:
    listing = resolve_listing(spec, state.catalog.get(spec.dataset))
    return {
        "class_indices": listing.class_indices,
        "files": list(listing.files),
        "labels": listing.labels.tolist(),
    }


@router.post(
    "/v1/stream",
    summary="Stream augmented batches as wire-protocol v1 frames",
    response_class=FrameStreamResponse,
    status_code=200,
)
async def stream(state: State, spec: Annotated[StreamSpec, Body()]) -> FrameStreamResponse:
    dataset = state.catalog.get(spec.dataset)
    plan = await run_in_threadpool(make_plan, spec, dataset, state.limits)
    if not state.slots.try_acquire():
        raise BusyError(
            f"this server already runs {state.slots.limit} streams, its limit; retry later"
        )
    frames = stream_frames(
        plan, state.pool, prefetch=state.settings.prefetch, heartbeat_s=state.settings.heartbeat_s
    )
    return FrameStreamResponse(frames, on_close=state.slots.release)

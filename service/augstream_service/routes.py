"""Thin HTTP routes: validate, look up, hand over to the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from augstream.spec import StreamSpec
from augstream.wire import PROTOCOL_VERSION

from . import __version__
from .catalog import Dataset, DatasetUnavailableError
from .errors import BusyError
from .pipeline import StreamPlan, make_plan
from .preview import MAX_TILE, label_texts, preview_fields, render_grid
from .producer import FrameStreamResponse, stream_frames
from .samples import resolve_samples
from .state import State

__all__ = ["UI_DIR", "router"]

#: All routes; with API keys, all but the open ones sit behind ``auth.KeyCheck``.
router = APIRouter()
#: The page's HTML, CSS and JavaScript.
UI_DIR = pathlib.Path(__file__).parent / "ui"


def _info(dataset: Dataset) -> dict[str, Any]:
    listing = dataset.listing
    counts = [int((listing.labels == i).sum()) for i in range(len(listing.class_names))]
    return {
        "name": dataset.name,
        "samples": len(listing.files),
        "class_indices": listing.class_indices,
        "class_counts": dict(zip(listing.class_names, counts, strict=True)),
    }


@router.get("/", summary="The preview and status page (needs no key)", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(UI_DIR / "index.html")


@router.get("/healthz", summary="Liveness check (needs no key)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness (needs no key): the worker pool runs and every dataset can be listed",
    responses={503: {"description": "Not ready; the log says which dataset failed"}},
)
def readyz(state: State) -> JSONResponse:
    unavailable = 0
    for name in state.catalog.names():
        try:
            state.catalog.get(name).listing  # noqa: B018 - listing is what is checked
        except DatasetUnavailableError:
            unavailable += 1  # the catalog logged why; an open route names nothing
    pool = state.executor is not None
    body = {"status": "ready", "datasets": len(state.catalog.names())}
    if unavailable or not pool:
        body = {
            "status": "not ready",
            "unavailable_datasets": unavailable,
            "pool": "running" if pool else "stopped",
        }
    return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics: images, batches, bytes, streams, stage timings, caches, errors",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/status",
    summary="Live status: the streams being sent (dataset, client, rates), totals, caches, errors",
)
def status(state: State) -> dict[str, Any]:
    return {"version": __version__, **state.metrics.status()}


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
        "skipped_samples": state.metrics.skipped_counts(),
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


@router.get(
    "/v1/preview",
    summary="A PNG grid of augmented samples with their labels (the same spec as a stream)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The grid"}},
)
async def preview(
    state: State,
    request: Request,
    spec: Annotated[
        str,
        Query(
            description="The stream spec as a JSON object; any spec field may also be given "
            "as its own parameter (a JSON value or plain text), which wins",
            examples=['{"dataset": "pets", "target_size": [96, 96], "rotation_range": 20}'],
        ),
    ] = "{}",
    rows: Annotated[int, Query(ge=1, le=8)] = 4,
    cols: Annotated[int, Query(ge=1, le=16)] = 8,
    epoch: Annotated[int, Query(ge=0, description="Which epoch's first batch to show")] = 0,
    tile: Annotated[int, Query(ge=16, le=MAX_TILE, description="Smallest tile, pixels")] = 96,
) -> Response:
    try:
        fields = preview_fields(spec, request.query_params, rows=rows, cols=cols, epoch=epoch)
        parsed = StreamSpec.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    plan = await run_in_threadpool(
        make_plan, parsed, state.catalog, state.uploads, state.limits, state.reader, state.metrics
    )
    png = await asyncio.wrap_future(state.pool.submit(_grid, plan, epoch, cols, tile))
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _grid(plan: StreamPlan, epoch: int, cols: int, tile: int) -> bytes:
    produced = plan.produce_batch(epoch, 0)
    captions = label_texts(
        plan.spec.class_mode, plan.source.class_names, produced.arrays, len(produced.sample_ids)
    )
    return render_grid(produced.arrays["x"], captions, cols, tile)


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
        state.metrics,
    )
    owner = request.state.owner
    refusal = state.slots.refusal(owner)
    if refusal is not None:
        raise BusyError(*refusal)
    release = state.slots.acquire(owner)
    metrics = state.metrics
    client = request.client
    live = metrics.stream_started(
        plan.source.name, f"{client.host}:{client.port}" if client else "?", owner
    )

    def close() -> None:
        metrics.stream_ended(live)
        release()

    frames = stream_frames(
        plan,
        state.pool,
        prefetch=state.settings.prefetch,
        heartbeat_s=state.settings.heartbeat_s,
        draining=lambda: state.draining,
        on_batch=lambda images, nbytes: metrics.batch_sent(live, images, nbytes),
        on_error=metrics.error,
    )
    return FrameStreamResponse(
        frames,
        on_close=close,
        send_timeout_s=state.settings.send_timeout_s,
        on_evict=lambda: metrics.error("stalled_client_evicted"),
    )

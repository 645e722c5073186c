"""Routes for watching the server: the page, health, readiness, metrics, status, previews.

Thin like the data routes: the figures live in ``metrics``, the grid in ``preview``.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from augstream_protocol.spec import StreamSpec

from . import __version__
from .admission import admitted, while_connected
from .catalog import DatasetUnavailableError
from .costs import preview_cost
from .numerics import fingerprint, libraries
from .pipeline import StreamPlan, make_plan
from .preview import MAX_TILE, grid_bytes, label_texts, preview_fields, render_grid
from .state import State

__all__ = ["UI_DIR", "router"]

router = APIRouter()
#: The page's HTML, CSS and JavaScript.
UI_DIR = pathlib.Path(__file__).parent / "ui"

_PREVIEW_EXAMPLE = '{"dataset": "pets", "target_size": [96, 96], "rotation_range": 20}'


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The preview and status page (needs no key; it asks for one when the server does)."""
    return FileResponse(UI_DIR / "index.html")


@router.get(
    "/healthz",
    summary="Liveness (needs no key)",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    """The process answers. For load balancers and ``docker compose`` health checks."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness (needs no key): the worker pool runs and every dataset is listed",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready", "datasets": 2}}}},
        503: {
            "description": "Not ready; the server's log says which dataset failed and why",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not ready",
                        "unavailable_datasets": 1,
                        "pool": "running",
                    }
                }
            },
        },
    },
)
def readyz(state: State) -> JSONResponse:
    """Ready when every dataset of the catalog has been listed and the pool runs. Open to
    anyone, so it names no dataset: only how many are unavailable."""
    unavailable = 0
    for name in state.catalog.names():
        try:
            state.catalog.get(name).listing  # noqa: B018 - listing is what is checked
        except DatasetUnavailableError:
            unavailable += 1
    pool = state.executor is not None
    if unavailable or not pool:
        body: dict[str, Any] = {
            "status": "not ready",
            "unavailable_datasets": unavailable,
            "pool": "running" if pool else "stopped",
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "datasets": len(state.catalog.names())})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(state: State) -> Response:
    """Counters and histograms in Prometheus' text format: ``augstream_images_total``,
    ``_batches_total``, ``_sent_bytes_total``, ``_streams_total`` (by dataset),
    ``augstream_active_streams``, ``augstream_stage_seconds`` (read, decode, augment,
    encode; per batch), ``augstream_cache_lookups_total`` (by cache and hit/miss),
    ``augstream_decodes_total``, ``augstream_store_reads_total``,
    ``augstream_errors_total`` (by kind), ``augstream_skipped_samples_total``, and what
    clients report of their trainers: ``augstream_input_wait_seconds_total`` and
    ``augstream_input_batches_total`` (by dataset; autoscaling follows the first's rate)."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/status",
    summary="Live status: streams being sent, totals, caches, errors",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "version": "0.1.0",
                        "uptime_s": 3600.0,
                        "streams": [
                            {
                                "id": 7,
                                "dataset": "pets",
                                "client": "10.0.0.12:51432",
                                "owner": "key 0",
                                "seconds": 120.5,
                                "batches": 1800,
                                "images": 57600,
                                "bytes": 8670000000,
                                "batches_per_s": 15.0,
                                "bytes_per_s": 72000000,
                            }
                        ],
                        "totals": {"streams": 12, "batches": 9000, "images": 288000},
                        "caches": {"images": {"hits": 250000, "misses": 38000}},
                        "errors": {"not_found": 2},
                        "skipped_samples": {},
                    }
                }
            }
        }
    },
)
def status(state: State) -> dict[str, Any]:
    """What the page's live table shows: each stream's dataset, client, caller (a key's
    number, never the key) and its rates over the last 10 s; totals since the start; the
    caches' figures and hit rates; errors by kind; the numerics fingerprint (its digest, and
    the libraries and CPU code paths behind it) by which replicas are grouped."""
    numerics = {"digest": fingerprint()["digest"], **libraries()}
    return {"version": __version__, **state.metrics.status(), "numerics": numerics}


@router.get(
    "/v1/preview",
    summary="A PNG grid of augmented samples with their labels",
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
            examples=[_PREVIEW_EXAMPLE],
        ),
    ] = "{}",
    rows: Annotated[int, Query(ge=1, le=8)] = 4,
    cols: Annotated[int, Query(ge=1, le=16)] = 8,
    epoch: Annotated[int, Query(ge=0, description="Which epoch's first batch to show")] = 0,
    tile: Annotated[int, Query(ge=16, le=MAX_TILE, description="Smallest tile, pixels")] = 96,
) -> Response:
    """The first ``rows`` x ``cols`` samples of ``epoch`` of the stream this spec describes,
    exactly as a stream sends them (seed 0 unless given): see what the network will see
    before training. Small images are enlarged, float images stretched for display."""
    try:
        fields = preview_fields(spec, request.query_params, rows=rows, cols=cols, epoch=epoch)
        parsed = StreamSpec.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    owner = request.state.owner
    # At most max_previews at once: a wait, then 503 (429 per key) beyond.
    release = await state.previews.enter(owner)
    try:
        plan = await run_in_threadpool(
            make_plan,
            parsed,
            state.catalog,
            state.uploads,
            state.limits,
            state.reader,
            state.metrics,
        )
        cost = preview_cost(plan, grid_bytes(rows, cols))
        with admitted(state.budget, cost, "this preview", owner):
            lane = state.scheduler.lane("preview", owner)
            made = asyncio.wrap_future(lane.submit(_grid, plan, epoch, cols, tile))
            png = await while_connected(request, lane, made)
    finally:
        release()
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _grid(plan: StreamPlan, epoch: int, cols: int, tile: int) -> bytes:
    produced = plan.produce_batch(epoch, 0)
    captions = label_texts(
        plan.spec.class_mode, plan.source.class_names, produced.arrays, len(produced.sample_ids)
    )
    return render_grid(produced.arrays["x"], captions, cols, tile)

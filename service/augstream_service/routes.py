"""Thin HTTP routes for data: datasets, uploads, file listings and streams; validate, look
up, hand over to the pipeline. (The routes for watching the server are in ``watch``.)"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.openapi.models import Example
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from augstream_protocol.info import InputWait
from augstream_protocol.spec import StreamSpec
from augstream_protocol.stats import StatsRequest
from augstream_protocol.wire import COMPACT_REQUEST, INPUT_WAIT_HEADER, PROTOCOL_VERSION

from . import __version__
from .admission import admitted, fit_admitted, stream_window
from .catalog import Dataset, DatasetUnavailableError
from .costs import UPLOAD_COST
from .errors import AdminOnlyError, BusyError
from .masks import pair_count
from .numerics import fingerprint, libraries
from .pipeline import make_plan
from .producer import FrameStreamResponse, stream_frames
from .resolve import resolve_samples
from .scheduler import STREAMS
from .settings import sizing
from .shared import listing_generation, stream_identity
from .state import State
from .uploads import UnknownArrayError
from .wheels import wheel_path

__all__ = ["router"]

#: With API keys, all these sit behind ``auth.KeyCheck``.
router = APIRouter()

#: Specs shown in the API reference (``/docs``), ready to try.
SPEC_EXAMPLES: dict[str, Example] = {
    "augmented": {
        "summary": "A folder dataset, augmented as in Keras' tutorials",
        "value": {
            "dataset": "pets",
            "target_size": [224, 224],
            "batch_size": 32,
            "seed": 1,
            "rotation_range": 20,
            "width_shift_range": 0.1,
            "height_shift_range": 0.1,
            "zoom_range": 0.1,
            "horizontal_flip": True,
            "rescale": 0.00392156862745098,
        },
    },
    "validation": {
        "summary": "The validation subset, one pass, not shuffled",
        "value": {
            "dataset": "pets",
            "target_size": [224, 224],
            "validation_split": 0.2,
            "subset": "validation",
            "shuffle": False,
            "epochs": 1,
        },
    },
    "resume-shard": {
        "summary": "Shard 1 of 4 (one per GPU worker), resumed at epoch 3, batch 120",
        "value": {
            "dataset": "pets",
            "seed": 7,
            "shard": {"index": 1, "count": 4},
            "start": {"epoch": 3, "batch": 120},
        },
    },
}


#: Fits shown in the API reference, on the dataset the examples above name.
STATS_EXAMPLES: dict[str, Example] = {
    "mean-std": {
        "summary": "Per-channel mean and std (featurewise_center, _std_normalization)",
        "value": {
            "spec": {
                "dataset": "pets",
                "target_size": [224, 224],
                "rescale": 0.00392156862745098,
                "featurewise_center": True,
                "featurewise_std_normalization": True,
            }
        },
    },
    "zca": {
        "summary": "A ZCA whitening matrix for 32 x 32 RGB images (3072 features)",
        "value": {"spec": {"dataset": "pets", "target_size": [32, 32], "zca_whitening": True}},
    },
    "augmented": {
        "summary": "On 200 images, each augmented twice (Keras' augment=True, rounds=2)",
        "value": {
            "spec": {
                "dataset": "pets",
                "target_size": [96, 96],
                "rotation_range": 20,
                "horizontal_flip": True,
                "featurewise_center": True,
            },
            "augment": True,
            "rounds": 2,
            "seed": 1,
            "sample_size": 200,
        },
    },
}


def parse_wait(value: str | None) -> tuple[float, int] | None:
    """An ``Augstream-Input-Wait`` header's ``seconds;batches``; None when absent or not
    sensible (it is telemetry: never a reason to refuse a stream)."""
    parts = (value or "").split(";")
    if len(parts) != 2:
        return None
    try:
        report = InputWait(dataset="-", waited_s=parts[0], batches=parts[1])
    except ValueError:
        return None
    return report.waited_s, report.batches


def _info(dataset: Dataset) -> dict[str, Any]:
    listing = dataset.listing
    counts = [int((listing.labels == i).sum()) for i in range(len(listing.class_names))]
    return {
        "name": dataset.name,
        "samples": len(listing.files),
        "class_indices": listing.class_indices,
        "class_counts": dict(zip(listing.class_names, counts, strict=True)),
        "mask_pairs": pair_count(dataset),
        "note": dataset.empty_reason(),
    }


@router.get(
    "/v1/server", summary="Version, protocol, the limits a client must respect, streams running"
)
def server_info(state: State) -> dict[str, Any]:
    """What a client checks before it streams: the protocol version it must speak, the
    limits its specs and uploads must respect, and the numerics fingerprint (a digest per
    family of operations) by which it tells whether replicas make the same bytes."""
    settings = state.settings
    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "limits": {
            "max_batch_bytes": settings.max_batch_bytes,
            "max_file_bytes": settings.max_file_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_image_bytes": settings.max_image_bytes,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_streams": settings.max_streams,
            "max_streams_per_key": settings.max_streams_per_key,
            "memory_budget_bytes": settings.memory_budget_bytes,
            "max_previews": settings.max_previews,
            "max_fits": settings.max_fits,
        },
        "memory": state.budget.figures(),
        "workers": state.fair.figures() if state.fair is not None else None,
        "active_streams": state.slots.active,
        "sibling_ports": settings.sibling_ports,
        "sizing": sizing(settings),
        "skipped_samples": state.metrics.skipped_counts(),
        "numerics": fingerprint(),
        "libraries": libraries(),
        "client_wheel": wheel_path(),
    }


@router.get("/v1/datasets", summary="The datasets this server offers")
def list_datasets(state: State) -> dict[str, list[dict[str, Any]]]:
    """Every dataset that can be listed now, with its sample count and classes (Keras'
    ``class_indices``). A dataset whose store is down is left out (the log says why)."""
    infos = []
    for name in state.catalog.names():
        # One unavailable dataset must not hide the others; it is logged by the catalog.
        with contextlib.suppress(DatasetUnavailableError):
            infos.append(_info(state.catalog.get(name)))
    return {"datasets": infos}


@router.get("/v1/datasets/{name}", summary="One dataset: sample count and class indices")
def get_dataset(name: str, state: State) -> dict[str, Any]:
    """One dataset; 404 naming the datasets there are if ``name`` is not one, 502/503 if its
    store cannot be listed."""
    return _info(state.catalog.get(name))


@router.post(
    "/v1/datasets/{name}/refresh",
    summary="List a dataset again (new and replaced files are seen; running streams keep theirs)",
    responses={403: {"description": "The server has API keys and this one is not an admin key"}},
)
def refresh_dataset(name: str, state: State, request: Request) -> dict[str, Any]:
    """List the dataset again now rather than when its listing expires; streams already
    running keep the files they started with. The dataset's entries in the shared caches go
    unused from then on, so with API keys only an admin key may (``admin_keys``; 403)."""
    if not request.state.admin:
        raise AdminOnlyError("refreshing a dataset needs an admin key (the server's admin_keys)")
    state.catalog.get(name).refresh()
    return _info(state.catalog.get(name))


@router.post("/v1/report", status_code=204, summary="A trainer's wait for batches (autoscaling)")
def report_wait(state: State, report: InputWait) -> None:
    """How long a trainer waited for the batches of ``dataset`` since its client last said:
    counted in ``augstream_input_wait_seconds_total`` (and ``augstream_input_batches_total``),
    whose rate autoscaling follows. Clients send it with their stream requests
    (``Augstream-Input-Wait``), and here when they have opened none for a while. 404 for a
    dataset the server does not offer (labels stay bounded)."""
    if report.dataset != "arrays":
        state.catalog.get(report.dataset)  # 404 naming the datasets there are
    state.metrics.waited(report.dataset, report.waited_s, report.batches)


@router.get("/v1/cache", summary="Decodes, store reads, and the shared caches' hits and misses")
def cache_figures(state: State) -> dict[str, Any]:
    """Images decoded and files read so far, and each cache's hits, misses, evictions and
    bytes held (file bytes; decoded images at each target size)."""
    return {**state.cache_figures(), "stats": state.stats.figures()}


Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the .npy bytes")]


@router.get(
    "/v1/arrays/{digest}",
    summary="Whether an uploaded array is here, and its shape",
    responses={404: {"description": "Not here (yet): upload it. Not counted as an error"}},
)
def array_info(state: State, digest: Digest) -> Any:
    """200 with its dtype and shape if the array is stored (so a client need not send it
    again), 404 if not. A client asks before every upload, so a 404 here answers a
    question rather than refuses a request: it is not counted among ``/metrics``' errors
    (nor the page's)."""
    try:
        return state.uploads.info(digest).as_dict()
    except UnknownArrayError as exc:
        return JSONResponse({"message": str(exc), "detail": str(exc)}, status_code=404)


@router.put(
    "/v1/arrays/{digest}",
    summary="Upload one array in .npy format, named by its SHA-256",
    status_code=201,
)
async def upload_array(state: State, digest: Digest, request: Request) -> dict[str, Any]:
    """The body is the array's ``.npy`` bytes (numbers, booleans or text; C order; at most
    ``max_upload_bytes``); the server checks that their SHA-256 is ``digest``. Specs name
    uploaded arrays by digest in ``arrays`` (``flow(x, y)``, ``flow_from_dataframe``)."""
    length = request.headers.get("content-length")
    with admitted(state.budget, UPLOAD_COST, "an upload's buffers", request.state.owner):
        info = await state.uploads.put(
            digest, request.stream(), int(length) if length and length.isdigit() else None
        )
    return info.as_dict()


@router.get(
    "/v1/arrays/{digest}/npy",
    summary="Download a stored array in .npy format (an upload, or fitted statistics)",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_array(state: State, digest: Digest) -> FileResponse:
    """The array's ``.npy`` bytes, whose SHA-256 is ``digest``: how a client fetches a ZCA
    matrix ``POST /v1/stats`` stored (Keras' ``zca_whitening_matrix``). 404 if not here."""
    return FileResponse(state.uploads.file(digest), media_type="application/octet-stream")


@router.post(
    "/v1/stats",
    summary="Dataset statistics for featurewise standardisation (Keras' fit), cached",
    responses={
        404: {"description": "Unknown dataset or uploaded array"},
        422: {"description": "A field is wrong, or a ZCA matrix or sample over the limits"},
        502: {"description": "An image of the sample could not be read"},
        503: {"description": "At the server's fit limit, or over its memory budget"},
    },
)
async def dataset_stats(
    state: State,
    request: Annotated[StatsRequest, Body(openapi_examples=STATS_EXAMPLES)],
    connection: Request,
) -> dict[str, Any]:
    """What Keras' ``fit(x, augment, rounds, seed)`` computes, on the images ``spec`` reads:
    the per-channel mean and std (after ``rescale``), and with ``zca_whitening`` the ZCA
    matrix. The arrays are stored like uploads; the answer gives their values and digests,
    which a stream's ``stats`` names. A repeated request is answered from the cache
    (``cached: true``); ``GET /v1/cache`` counts fits and hits. At most ``max_fits`` run
    at once (503, or 429 for a key's own ``max_fits_per_key``, with Retry-After); a fit
    reserves its memory (ZCA: several D x D matrices) before it starts, and stops when its
    client goes away."""
    return await fit_admitted(state, request, connection)


@router.post("/v1/files", summary="The files and labels a spec streams from, in sample-id order")
def list_files(
    state: State, spec: Annotated[StreamSpec, Body(openapi_examples=SPEC_EXAMPLES)]
) -> dict[str, Any]:
    """Keras' ``filenames`` and ``classes`` for this spec (subset, classes and shard
    applied), in the order of sample ids."""
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
    responses={
        200: {"content": {"application/vnd.augstream.v1": {}}},
        401: {"description": "No API key, or a wrong one"},
        404: {"description": "Unknown dataset or uploaded array"},
        422: {"description": "A field of the spec is wrong; the message names it"},
        429: {"description": "This key already runs its most streams (Retry-After)"},
        503: {"description": "At the server's stream limit, or the store is down (Retry-After)"},
    },
)
async def stream(
    state: State,
    spec: Annotated[StreamSpec, Body(openapi_examples=SPEC_EXAMPLES)],
    request: Request,
) -> FrameStreamResponse:
    """The response body is a sequence of frames (see docs/protocol.md): a header (the
    resolved spec, its seed, array shapes, class indices), then batches in order, with
    heartbeats while a slow batch is made, and an end frame when ``epochs`` is set. A
    problem found before the first byte is an HTTP error (422 naming the field, 404, 429 or
    503 with Retry-After); one found later is an error frame. On shutdown a go-away frame
    names the next batch, from which the client resumes (``start``) without loss.
    """
    generation = listing_generation(state.catalog, spec)
    plan = await run_in_threadpool(
        make_plan,
        spec,
        state.catalog,
        state.uploads,
        state.limits,
        state.reader,
        state.metrics,
        request.headers.get(COMPACT_REQUEST[0]) == COMPACT_REQUEST[1],
        state.processes.make if state.processes is not None else None,
    )
    told = parse_wait(request.headers.get(INPUT_WAIT_HEADER))
    if told is not None:
        state.metrics.waited(plan.source.name, *told)
    owner = request.state.owner
    refusal = state.slots.refusal(owner)
    if refusal is not None:
        raise BusyError(*refusal)
    window = stream_window(state.budget, plan, owner)  # its first batch reserved: 503 if not
    release = state.slots.acquire(owner)
    metrics = state.metrics
    client = request.client
    live = metrics.stream_started(
        plan.source.name, f"{client.host}:{client.port}" if client else "?", owner
    )

    def close() -> None:
        metrics.stream_ended(live)
        release()
        window.end()

    # Its batches are made on the workers as this key's fair share allows (``scheduler``),
    # or shared with identical streams (``shared``), whatever ranges they ask for.
    lane = state.scheduler.lane(STREAMS, owner)
    identity = stream_identity(plan, generation, listing_generation(state.catalog, spec))
    batches = None if state.batches is None else state.batches.source(plan, identity, lane)
    frames = stream_frames(
        plan,
        lane,
        prefetch=state.settings.prefetch,
        heartbeat_s=state.settings.heartbeat_s,
        draining=lambda: state.draining,
        on_batch=lambda images, nbytes: metrics.batch_sent(live, images, nbytes),
        on_error=metrics.error,
        batches=batches,
        window=window,
        sibling_ports=state.settings.sibling_ports,
    )
    return FrameStreamResponse(
        frames,
        on_close=close,
        send_timeout_s=state.settings.send_timeout_s,
        on_evict=lambda: metrics.error("stalled_client_evicted"),
        min_read_rate=state.settings.min_read_rate,
    )

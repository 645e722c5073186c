"""Build the FastAPI app from settings (nothing is read at import time)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cv2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import __version__
from .admission import KindSlots
from .auth import KeyCheck
from .catalog import Catalog
from .costs import decode_scratch
from .errors import install_error_handlers
from .logs import RequestLog
from .memory import MemoryBudget
from .metrics import Metrics
from .numerics import check_mode, fingerprint
from .peers import BodyDeadline
from .processes import ProcessPool
from .producer import StreamSlots
from .reader import ImageReader
from .routes import router
from .runners import Runners
from .scheduler import FairScheduler
from .settings import Settings
from .shared import SharedBatches
from .state import ServerState
from .watch import UI_DIR
from .watch import router as watch_router
from .wheels import router as wheels_router
from .wiring import catalog_from, limits_from, uploads_from

__all__ = ["create_app"]

log = logging.getLogger("augstream.app")


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    """A ready-to-serve app for ``settings`` (default: from the environment)."""
    settings = settings if settings is not None else Settings()
    check_mode(settings.numerics)
    fingerprint()  # computed now (~0.1 s), not inside the first stream's request
    slots = StreamSlots(settings.max_streams, settings.max_streams_per_key)
    budget = MemoryBudget(
        settings.memory_budget_bytes, owner_share=settings.max_memory_share_per_key
    )
    # Each worker may decode one image of the largest size allowed before resizing it: that
    # is held for the workers once, not charged to every batch in flight.
    scratch = settings.threads * decode_scratch(settings.max_image_pixels, settings.max_image_bytes)
    if scratch * 2 > settings.memory_budget_bytes:
        raise ValueError(
            f"memory_budget_bytes ({settings.memory_budget_bytes}) must be at least twice "
            f"the workers' decode scratch, threads x the largest decoded image ({scratch}): "
            "raise it, or lower threads, max_image_bytes or max_image_pixels"
        )
    budget.reserve(scratch, "the workers' decode scratch")
    # With worker processes the caches' bytes are shared out: a part each, and one for this
    # process (previews, fits, a batch made here when a worker is lost).
    shares = settings.processes + 1 if settings.processes and catalog is None else 1
    reader = ImageReader(
        settings.byte_cache_bytes // shares, settings.image_cache_bytes // shares, budget=budget
    )
    # The caches' figures are the server's and, with worker processes, theirs too.
    metrics = Metrics(active_streams=lambda: slots.active, caches=lambda: state.cache_figures())
    reader.metrics = metrics
    batches = SharedBatches(budget.share(settings.batch_cache_bytes), on_shared=metrics.shared)
    # After the decoded images and the files' bytes, the batches give room back too.
    budget.add_reclaimer(batches.cache.shrink)
    metrics.batch_cache = batches.figures
    state = ServerState(
        settings=settings,
        catalog=catalog if catalog is not None else catalog_from(settings),
        slots=slots,
        limits=limits_from(settings),
        uploads=uploads_from(settings),
        reader=reader,
        metrics=metrics,
        api_keys=[key.get_secret_value().encode() for key in settings.api_keys],
        batches=batches,
        budget=budget,
        previews=KindSlots(
            "preview",
            settings.max_previews,
            settings.max_previews_per_key,
            "max_previews",
            settings.admission_wait_s,
        ),
        fits=KindSlots(
            "fit",
            settings.max_fits,
            settings.max_fits_per_key,
            "max_fits",
            settings.admission_wait_s,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The pool is the parallelism; OpenCV's own threads would only oversubscribe the cores.
        cv2.setNumThreads(1)
        state.executor = Runners(settings.threads)
        quarter = max(1, settings.threads // 4)
        state.fair = FairScheduler(
            state.executor,
            settings.threads,
            caps={
                "preview": settings.preview_workers or quarter,
                "fit": settings.fit_workers or quarter,
            },
            weights={f"key {i}": weight for i, weight in enumerate(settings.key_weights)},
        )
        if settings.processes and catalog is None:
            state.processes = ProcessPool(settings, settings.processes, metrics)
        elif settings.processes:
            log.warning(
                "processes=%d needs the catalog from the settings (each worker builds its "
                "own): this app's batches are made in its threads",
                settings.processes,
            )
        try:
            yield
        finally:
            state.fair.close()
            state.executor.shutdown(wait=False, cancel_futures=True)
            state.executor = None
            if state.processes is not None:
                state.processes.close()
                state.processes = None

    app = FastAPI(
        title="augstream",
        version=__version__,
        summary="Augmented image batches, streamed.",
        lifespan=lifespan,
    )
    app.state.augstream = state
    # The preview page: static files, no build step (watch.page serves its index).
    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
    install_error_handlers(app, metrics)
    app.include_router(watch_router)
    app.include_router(wheels_router)
    app.include_router(router)
    # Inside the key check: a caller without a key is refused before any body is read.
    app.add_middleware(BodyDeadline, rate=settings.min_body_rate, slack_s=settings.body_timeout_s)
    app.add_middleware(
        KeyCheck,
        keys=state.api_keys,
        on_refuse=metrics.error,
        admin_keys=[key.get_secret_value().encode() for key in settings.admin_keys],
    )
    # Outermost, so requests the key check refuses are logged too.
    app.add_middleware(RequestLog)
    return app

"""What the app owns while it runs, and the dependency that hands it to routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from .admission import KindSlots
from .catalog import Catalog
from .fit import StatsBook
from .memory import MemoryBudget
from .metrics import Metrics
from .pipeline import Limits
from .processes import ProcessPool
from .producer import StreamSlots
from .reader import ImageReader
from .runners import Runners
from .scheduler import FairScheduler
from .settings import Settings
from .shared import SharedBatches
from .uploads import UploadStore

__all__ = ["ServerState", "State"]


@dataclass
class ServerState:
    """Settings, catalog, uploaded arrays, caches, the worker pool and the stream slots of
    one app."""

    settings: Settings
    catalog: Catalog
    slots: StreamSlots
    limits: Limits
    uploads: UploadStore
    #: Reads and decodes dataset images through the shared caches.
    reader: ImageReader
    #: Counters, stage timings and the live streams (``/metrics``, ``/v1/status``).
    metrics: Metrics
    #: What every stream, preview, fit, upload and cache draws its bytes from.
    budget: MemoryBudget
    #: Previews and fits running, against their caps (streams have ``slots``).
    previews: KindSlots
    fits: KindSlots
    #: The API keys as bytes, ready for constant-time comparison (empty: no keys needed).
    api_keys: list[bytes] = field(default_factory=list)
    #: Dataset statistics computed so far (``POST /v1/stats``).
    stats: StatsBook = field(default_factory=StatsBook)
    #: Finished batches that identical streams share (none: each stream makes its own).
    batches: SharedBatches | None = None
    #: Set when the server is asked to stop: streams hand their clients over (go-away frames).
    draining: bool = False
    executor: Runners | None = field(default=None)
    #: The worker processes that make batches' samples (none: the threads do).
    processes: ProcessPool | None = field(default=None)
    #: Hands the pool's workers out fairly (by kind, key and flow; started with the pool).
    fair: FairScheduler | None = field(default=None)

    def cache_figures(self) -> dict[str, Any]:
        """Decodes, store reads and the caches' figures, the worker processes' included."""
        own = self.reader.figures()
        return own if self.processes is None else self.processes.figures(own)

    @property
    def pool(self) -> Runners:
        """The running worker pool (started by the app's lifespan)."""
        if self.executor is None:
            raise RuntimeError("the worker pool is not running (was the app started?)")
        return self.executor

    @property
    def scheduler(self) -> FairScheduler:
        """The running scheduler, through which all work reaches the pool."""
        if self.fair is None:
            raise RuntimeError("the worker pool is not running (was the app started?)")
        return self.fair


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.augstream
    return state


State = Annotated[ServerState, Depends(_state)]

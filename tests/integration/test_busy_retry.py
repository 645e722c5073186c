"""A fit or a preview that finds the server at its cap (503, or 429 for the key's own) waits
its turn as a stream's reconnect does: sent again after ``Retry-After`` while the client's
retry policy allows, then the busy answer is raised."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from augstream import BusyError, Client, RetryPolicy
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

SPEC = {"dataset": "pets", "target_size": (16, 16), "featurewise_center": True}


class BusyAtFirst:
    """The real app behind a door that answers the first ``busy`` requests of each path of
    ``paths`` as the server does at its cap."""

    def __init__(self, app: FastAPI, paths: dict[str, int], busy: int) -> None:
        self.app, self.paths, self.busy = app, paths, busy
        self.state = app.state  # the server reads its settings there
        self.refused: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path in self.paths and self.refused[path] < self.busy:
            self.refused[path] += 1
            status = self.paths[path]
            message = "this server already runs 4 fits, its limit (max_fits); retry shortly"
            answer = PlainTextResponse(message, status_code=status, headers={"Retry-After": "0"})
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


@pytest.fixture
def door(image_root: Path) -> Iterator[tuple[str, BusyAtFirst]]:
    app = BusyAtFirst(
        create_app(Settings(datasets=[image_root], threads=2)),
        {"/v1/stats": 503, "/v1/preview": 429},
        busy=2,
    )
    with BackgroundServer(app) as server:  # type: ignore[arg-type]
        yield server.url, app


def test_fits_and_previews_wait_their_turn(
    door: tuple[str, BusyAtFirst], caplog: pytest.LogCaptureFixture
) -> None:
    url, app = door
    quick = RetryPolicy(attempts=3, backoff_s=0.01)
    with caplog.at_level(logging.INFO, logger="augstream"), Client(url, retry=quick) as client:
        fitted = client.stats(**SPEC)
        png = client.preview(dataset="pets", rows=1, cols=2)
    assert fitted.stats.mean is not None and png.startswith(b"\x89PNG")
    assert app.refused == {"/v1/stats": 2, "/v1/preview": 2}
    tried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tried) == 4 and "max_fits" in tried[0] and "HTTP 503" in tried[0]


def test_a_server_busy_for_longer_than_the_policy_raises_its_answer(
    door: tuple[str, BusyAtFirst],
) -> None:
    url, app = door
    with Client(url, retry=RetryPolicy(attempts=1, backoff_s=0.01)) as client:
        with pytest.raises(BusyError, match=r"max_fits.*HTTP 503") as busy:
            client.stats(**SPEC)
        assert busy.value.status == 503 and busy.value.retry_after == 0
        with pytest.raises(BusyError, match="HTTP 429"):
            client.preview(dataset="pets", rows=1, cols=2)
    assert app.refused == {"/v1/stats": 2, "/v1/preview": 2}

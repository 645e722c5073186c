"""Every error a request can meet, mapped to its HTTP status in one place.

Bodies are JSON with a human ``message`` (what was expected, what was received) and,
for 422, FastAPI's ``detail`` list whose ``loc`` names the field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from .catalog import RECHECK_S, DatasetUnavailableError, UnknownDatasetError
from .metrics import Metrics
from .pipeline import PlanError, SampleError
from .uploads import UnknownArrayError, UploadError, UploadsBusyError, UploadTooLargeError

log = logging.getLogger("augstream.errors")

__all__ = ["AdminOnlyError", "BusyError", "install_error_handlers"]


class AdminOnlyError(Exception):
    """What the caller asked needs an admin key, and its key is not one."""


class BusyError(Exception):
    """No stream slot is free: the server's (503) or the caller's own quota (429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    # Inputs are not echoed: they may be large or carry something the client should not log.
    detail = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]
    message = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in detail)
    return {"message": f"invalid stream spec: {message}", "detail": jsonable_encoder(detail)}


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(_validation_body(list(exc.errors())), status_code=422)


async def _plan(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PlanError)
    error = {"type": "value_error", "loc": ["body", exc.field], "msg": exc.message}
    return JSONResponse(_validation_body([error]), status_code=422)


def _plain(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "detail": message}, status, headers=headers)


async def _unknown(_: Request, exc: Exception) -> JSONResponse:
    return _plain(404, str(exc.args[0]) if exc.args else "not found")


async def _gone(request: Request, _: Exception) -> JSONResponse:
    # The client closed its connection while its body was being read (an upload it gave
    # up on): nothing is wrong with the server, and nobody is left to answer.
    client = request.client
    log.info(
        "client %s went away during its request to %s",
        client.host if client else "?",
        request.url.path,
    )
    # 499, as nginx logs it: the client closed the request (nobody reads this answer).
    return _plain(499, "the client closed its connection during the request")


async def _admin_only(_: Request, exc: Exception) -> JSONResponse:
    return _plain(403, str(exc))


async def _upload(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UploadsBusyError):
        return _plain(429, str(exc), {"Retry-After": "1"})
    status = 413 if isinstance(exc, UploadTooLargeError) else 422
    return _plain(status, f"upload refused: {exc}")


async def _busy(_: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, BusyError) else 503
    return _plain(status, str(exc), {"Retry-After": "1"})


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DatasetUnavailableError) and not exc.transient:
        # The store answered, and the answer was no: retrying will not help until the
        # operator fixes the dataset, so the client is told at once.
        return _plain(502, str(exc))
    # As long as the dataset answers so without asking its store again.
    return _plain(503, str(exc), {"Retry-After": f"{RECHECK_S:.0f}"})


async def _sample(_: Request, exc: Exception) -> JSONResponse:
    # Streams report bad samples in-band; this is for one-shot requests (previews).
    return _plain(502, f"a sample could not be read: {exc}")


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _counted(handler: Handler, kind: str, metrics: Metrics) -> Handler:
    async def counted(request: Request, exc: Exception) -> JSONResponse:
        metrics.error(kind)
        return await handler(request, exc)

    return counted


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Register the mapping on ``app``, each error counted in ``metrics`` by its kind."""
    handlers: list[tuple[type[Exception], Handler, str]] = [
        (RequestValidationError, _validation, "invalid_spec"),
        (PlanError, _plan, "invalid_spec"),
        (UnknownDatasetError, _unknown, "not_found"),
        (UnknownArrayError, _unknown, "not_found"),
        (UploadError, _upload, "upload_refused"),
        (BusyError, _busy, "busy"),
        (AdminOnlyError, _admin_only, "forbidden"),
        (DatasetUnavailableError, _unavailable, "dataset_unavailable"),
        (SampleError, _sample, "sample_error"),
    ]
    for error, handler, kind in handlers:
        app.add_exception_handler(error, _counted(handler, kind, metrics))
    app.add_exception_handler(ClientDisconnect, _counted(_gone, "client_disconnected", metrics))

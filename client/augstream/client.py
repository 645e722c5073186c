"""``Client``: talk to an augstream server."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from augstream_protocol.fields import MAX_REPLICAS
from augstream_protocol.info import DatasetInfo, FileListing, ServerInfo
from augstream_protocol.npy import NpyPayload, encode_npy, parse_npy_header
from augstream_protocol.spec import StreamSpec
from augstream_protocol.stats import DatasetStats, StatsRequest

from ._discovery import Discovery, Endpoint, Replicas, nameservers_from
from ._exceptions import AugstreamError, TooLargeError
from ._http import error_from_response, reaching, watch_version
from ._invalid import spec_from
from .stream import RetryPolicy, Stream

log = logging.getLogger("augstream")

__all__ = ["Client"]


def _digests(spec: StreamSpec) -> list[str]:
    """The uploaded arrays a spec reads (images, file names, labels, weights, statistics)."""
    found: list[str | None] = []
    if spec.arrays is not None:
        arrays = spec.arrays
        found += [arrays.x, arrays.filenames, *arrays.y, arrays.sample_weight]
    if spec.stats is not None:
        found += [spec.stats.mean, spec.stats.std, spec.stats.zca_whitening_matrix]
    return [digest for digest in found if digest is not None]


def _resolve(spec: StreamSpec | None, fields: dict[str, Any]) -> StreamSpec:
    if spec is not None:
        fields = {**spec.model_dump(exclude_unset=True), **fields}
    return spec_from(fields)


class Client:
    """A connection to an augstream server, or to several replicas serving the same data.

    ``url`` defaults to the ``AUGSTREAM_URL`` environment variable (replicas separated by
    commas); ``api_key`` (default ``AUGSTREAM_API_KEY``) is sent as a bearer token.
    ``timeout`` is the longest silence tolerated on a connection; servers send heartbeats
    well within it.

    A URL's name may stand for many replicas (a Kubernetes headless Service, a scaled
    compose service): it is resolved to every address it has (``nameservers``, default
    ``AUGSTREAM_NAMESERVERS``, else the system's resolver) and resolved again every
    ``resolve_every_s`` while a stream runs. Each stream is spread over every replica found
    (every batch still arrives once, in order, byte-identical to one server's), and uploads
    go to each of them, and to a replica that joins later; other requests go to the first
    URL.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        nameservers: Sequence[str] | None = None,
        resolve_every_s: float = 5.0,
    ) -> None:
        given = url if url is not None else os.environ.get("AUGSTREAM_URL", "")
        urls = given.split(",") if isinstance(given, str) else list(given)
        urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        if not urls:
            raise ValueError("no server URL: pass Client(url) or set AUGSTREAM_URL")
        for given_url in urls:
            if not given_url.startswith(("http://", "https://")):
                raise ValueError(
                    f"a server URL starts with http:// or https://, got {given_url!r} "
                    f"(did you mean 'http://{given_url}'?)"
                )
        if len(urls) > MAX_REPLICAS:
            raise ValueError(f"at most {MAX_REPLICAS} replicas, got {len(urls)} URLs")
        self.urls = urls
        self.url = urls[0]
        api_key = api_key if api_key is not None else os.environ.get("AUGSTREAM_API_KEY")
        self.api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._retry = retry or RetryPolicy()
        self._resolve_every_s = resolve_every_s
        limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        agent = {"User-Agent": "augstream-client"}
        servers = None if nameservers is None else nameservers_from(",".join(nameservers))
        hooks: dict[str, list[Callable[[httpx.Response], None]]] = {"response": [watch_version]}
        self._replicas = Replicas(Discovery(urls, servers), limits, agent, hooks, self._headers)
        self._http = httpx.Client(
            base_url=urls[0], timeout=limits, headers=agent, event_hooks=hooks
        )
        self._replicas.adopt(urls[0], self._http)
        #: What this client uploaded, by digest: sent again to a replica that joins a stream.
        self._uploaded: dict[str, NpyPayload] = {}

    def _get(self, path: str) -> Any:
        with reaching(self.url):
            response = self._http.get(path, headers=self._headers)
        if response.status_code != 200:
            raise error_from_response(response)
        return response.json()

    def health(self) -> bool:
        """True when the server answers its health check."""
        try:
            return bool(self._get("/healthz").get("status") == "ok")
        except (AugstreamError, httpx.HTTPError, ValueError):
            return False

    def server_info(self) -> ServerInfo:
        """The server's version, protocol and limits."""
        return ServerInfo.model_validate(self._get("/v1/server"))

    def upload(self, array: Any) -> str:
        """Store ``array`` on the server, or on each replica (once: the same content is never
        sent twice) and return its name, the SHA-256 of its ``.npy`` encoding, for a spec's
        ``arrays``.

        Numbers, booleans and text (file names) are accepted; ``TooLargeError`` if the array
        is over the server's upload limit.
        """
        payload = encode_npy(array)
        for endpoint in self._replicas.endpoints():
            self._upload(endpoint, payload)
        self._uploaded[payload.digest] = payload
        return payload.digest

    def _upload(self, endpoint: Endpoint, payload: NpyPayload) -> None:
        with reaching(str(endpoint)):
            self._send(endpoint, payload)

    def _send(self, endpoint: Endpoint, payload: NpyPayload) -> None:
        http = self._replicas.http(endpoint)
        extensions = endpoint.extensions
        response = http.get(
            f"/v1/arrays/{payload.digest}", headers=self._headers, extensions=extensions
        )
        if response.status_code == 200:
            return
        if response.status_code != 404:
            raise error_from_response(response)
        # Refuse here what the server would refuse, before sending gigabytes to hear it.
        info = http.get("/v1/server", headers=self._headers, extensions=extensions)
        if info.status_code != 200:
            raise error_from_response(info)
        limit = ServerInfo.model_validate(info.json()).limits.get("max_upload_bytes")
        if limit is not None and payload.nbytes > limit:
            raise TooLargeError(
                f"the array is {payload.nbytes} bytes as .npy; {http.base_url} accepts uploads of "
                f"at most {limit} bytes",
                status=413,
                kind="too_large",
            )
        headers = {
            **self._headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(payload.nbytes),
        }
        # The server receives a few uploads at a time: a busy answer waits for a turn.
        response = self._taking_turns(
            lambda: http.put(
                f"/v1/arrays/{payload.digest}",
                content=payload.chunks(),
                headers=headers,
                extensions=extensions,
            )
        )
        if response.status_code not in (200, 201):
            raise error_from_response(response)

    def _taking_turns(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """``send()``'s response, sent again after the server's ``Retry-After`` (and the
        retry policy's back-off) while it answers busy (503, or 429: the key's own cap), as
        a stream's reconnects do; the busy answer itself once the policy's attempts are
        spent. Uploads, fits and previews each have a cap on how many run at once."""
        attempt = 0
        while True:
            attempt += 1
            response = send()
            if response.status_code not in (429, 503) or attempt > self._retry.attempts:
                return response
            busy = error_from_response(response)
            log.info("augstream: %s; trying again", busy)
            time.sleep(self._retry.delay(attempt, busy))

    def download(self, digest: str) -> np.ndarray[Any, Any]:
        """The stored array ``digest`` (an upload, or statistics the server fitted)."""
        with reaching(self.url):
            response = self._http.get(f"/v1/arrays/{digest}/npy", headers=self._headers)
        if response.status_code != 200:
            raise error_from_response(response)
        data = response.content
        header = parse_npy_header(data[:65536], versions=(1, 2))
        array = np.frombuffer(data, dtype=header.dtype, offset=header.offset)
        return array.reshape(header.shape).copy()

    def stats(
        self,
        spec: StreamSpec | None = None,
        /,
        *,
        augment: bool = False,
        rounds: int = 1,
        seed: int | None = None,
        sample_size: int | None = None,
        zca_epsilon: float = 1e-6,
        timeout: float = 3600.0,
        **fields: Any,
    ) -> DatasetStats:
        """Dataset statistics for featurewise standardisation, computed by the server on the
        images this spec reads: what Keras' ``fit(x, augment, rounds, seed)`` computes on
        ``x`` (see ``StatsRequest``). The server keeps them; a spec names them in ``stats``
        (``DatasetStats.stats``). ``seed`` is the fit's (the spec's own plays no part).
        ``timeout`` bounds the wait: a first fit reads every image of the sample. With
        several replicas, each is sent the arrays.
        """
        request = StatsRequest(
            spec=_resolve(spec, fields),
            augment=augment,
            rounds=rounds,
            seed=seed,
            sample_size=sample_size,
            zca_epsilon=zca_epsilon,
        )
        with reaching(self.url):
            response = self._taking_turns(
                lambda: self._http.post(
                    "/v1/stats",
                    json=request.request_body(),
                    headers=self._headers,
                    timeout=httpx.Timeout(timeout, connect=10.0),
                )
            )
        if response.status_code != 200:
            raise error_from_response(response)
        result = DatasetStats.model_validate(response.json())
        if len(self._replicas.endpoints()) > 1:
            # Streams are spread over every replica; each needs the arrays the first made.
            if result.stats.mean is not None:
                self.upload(result.mean_array())
            if result.stats.std is not None:
                self.upload(result.std_array())
            if result.stats.zca_whitening_matrix is not None:
                self.upload(self.download(result.stats.zca_whitening_matrix))
        return result

    def datasets(self) -> list[DatasetInfo]:
        """The datasets the server offers."""
        return [DatasetInfo.model_validate(d) for d in self._get("/v1/datasets")["datasets"]]

    def dataset(self, name: str) -> DatasetInfo:
        """One dataset's sample count and classes; ``NotFoundError`` if unknown."""
        return DatasetInfo.model_validate(self._get(f"/v1/datasets/{name}"))

    def files(self, spec: StreamSpec | None = None, /, **fields: Any) -> FileListing:
        """The files and labels a stream with this spec reads, in sample-id order (Keras'
        ``filenames`` and ``classes``)."""
        resolved = _resolve(spec, fields)
        with reaching(self.url):
            response = self._http.post(
                "/v1/files", json=resolved.request_body(), headers=self._headers
            )
        if response.status_code != 200:
            raise error_from_response(response)
        return FileListing.model_validate(response.json())

    def preview(
        self,
        spec: StreamSpec | None = None,
        /,
        *,
        rows: int = 4,
        cols: int = 8,
        epoch: int = 0,
        tile: int = 96,
        **fields: Any,
    ) -> bytes:
        """A PNG grid of ``rows`` x ``cols`` augmented samples of this spec, with their labels:
        what the first batch of ``epoch`` would hold (the same for the same seed).

        Tiles smaller than ``tile`` pixels are enlarged (nearest neighbour) so they can be
        seen; float images are stretched to the full grey range, tile by tile.
        """
        resolved = _resolve(spec, fields)
        query: dict[str, str | int] = {
            "spec": json.dumps(resolved.request_body(), separators=(",", ":")),
            "rows": rows,
            "cols": cols,
            "epoch": epoch,
            "tile": tile,
        }
        with reaching(self.url):
            response = self._taking_turns(
                lambda: self._http.get("/v1/preview", params=query, headers=self._headers)
            )
        if response.status_code != 200:
            raise error_from_response(response)
        return response.content

    def stream(
        self, spec: StreamSpec | None = None, /, *, prefetch: int = 4, **fields: Any
    ) -> Stream:
        """Start streaming batches.

        Pass a ``StreamSpec``, its fields as keyword arguments, or both (keywords win)::

            client.stream(dataset="cats", target_size=(224, 224), batch_size=32, seed=1,
                          rotation_range=20, horizontal_flip=True)

        Without a ``seed`` one is drawn here, so a reconnect resumes the very same stream.
        """
        resolved = _resolve(spec, fields)
        if resolved.seed is None:
            resolved = resolved.with_seed(secrets.randbelow(2**31))
        return Stream(
            self._replicas,
            resolved,
            headers=self._headers,
            prefetch=prefetch,
            retry=self._retry,
            resolve_every_s=self._resolve_every_s,
            prepare=lambda endpoint: self._prepare(endpoint, resolved),
        )

    def _prepare(self, endpoint: Endpoint, spec: StreamSpec) -> str | None:
        """Send a replica that joins a stream the arrays the stream reads; why it cannot
        take part, or None."""
        for digest in _digests(spec):
            payload = self._uploaded.get(digest)
            try:
                if payload is not None:
                    self._upload(endpoint, payload)
            except (httpx.HTTPError, AugstreamError) as exc:
                return f"it could not be sent the uploaded array {digest[:16]}... ({exc})"
        return None

    def close(self) -> None:
        """Close the HTTP connections (open streams stop working)."""
        self._http.close()
        self._replicas.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

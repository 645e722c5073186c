"""Where a client's replicas are: each URL it was given, its name resolved to every address
it has.

A Kubernetes headless Service (or docker compose's DNS for a scaled service) answers one
name with the address of every ready replica; the client connects to each address, sending
the name as the ``Host`` (and, over TLS, as the server name its certificate is checked
against). Names are resolved with dnspython, from the system's resolver configuration or
the nameservers given (``AUGSTREAM_NAMESERVERS``, e.g. ``10.0.0.10`` or ``127.0.0.1:5353``),
and resolved again whenever asked: streams re-resolve every few seconds and after a failure,
so replicas that come and go are seen. A name the DNS does not know (``/etc/hosts``, an
mDNS name) falls back to the C library's resolver; an address or ``localhost`` is used as is.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import dns.exception
import dns.nameserver
import dns.resolver
import httpx

__all__ = ["Discovery", "Endpoint", "Replicas", "nameservers_from"]

log = logging.getLogger("augstream")

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Seconds a server has to say which sibling processes it has, and how long an address
#: that did not answer waits before it is asked again (at first: then twice as long).
_ASK_TIMEOUT_S = 2.0
_ASK_AGAIN_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    """One replica: the URL it was found through, and the address to connect to."""

    #: The URL as given (``http://augstream-replicas:8080``).
    url: str
    #: The base URL to connect to (``http://10.1.2.3:8080``); the given URL for an address.
    address: str
    #: The ``Host`` header (and TLS server name), as the given URL names it.
    host: str
    #: One of the other server processes of a found endpoint's box (``--servers``).
    sibling: bool = False

    @property
    def extensions(self) -> dict[str, Any]:
        """httpx request extensions: over TLS to an address, the name to check the
        certificate against."""
        if self.address.startswith("https://") and self.address != self.url:
            return {"sni_hostname": httpx.URL(self.url).host}
        return {}

    def __str__(self) -> str:
        return self.address if self.address == self.url else f"{self.address} ({self.url})"


def nameservers_from(text: str | None) -> list[tuple[str, int]]:
    """``"10.0.0.10, 127.0.0.1:5353, [::1]:53"`` as (address, port) pairs."""
    found = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, number = item.partition(":")
            port = int(number)
        ipaddress.ip_address(host)  # a nameserver is an address (ValueError otherwise)
        found.append((host, port))
    return found


def _literal(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _base(scheme: str, address: str, port: int) -> str:
    shown = f"[{address}]" if ":" in address else address
    return f"{scheme}://{shown}:{port}"


def _at_port(endpoint: Endpoint, port: int) -> Endpoint:
    """``endpoint``'s sibling on ``port``: the same address and name, another port."""
    address = str(httpx.URL(endpoint.address).copy_with(port=port)).rstrip("/")
    name = httpx.URL(endpoint.url).host
    host = f"{f'[{name}]' if ':' in name else name}:{port}"
    return Endpoint(endpoint.url, address, host, sibling=True)


class Discovery:
    """Resolves the given URLs to endpoints, one per address of each name."""

    def __init__(
        self,
        urls: Sequence[str],
        nameservers: Sequence[tuple[str, int]] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.urls = list(urls)
        self.timeout = timeout
        given = (
            nameservers
            if nameservers is not None
            else nameservers_from(os.environ.get("AUGSTREAM_NAMESERVERS"))
        )
        self._resolver: dns.resolver.Resolver | None
        if given:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in given]
        else:
            try:
                self._resolver = dns.resolver.Resolver()
            except (dns.resolver.NoResolverConfiguration, OSError):
                self._resolver = None  # no resolv.conf: the C library's resolver only
        if self._resolver is not None:
            self._resolver.lifetime = timeout

    def resolve(self) -> list[Endpoint]:
        """Every endpoint now: the URLs in their order, each name's addresses sorted."""
        found: list[Endpoint] = []
        for url in self.urls:
            for endpoint in self._resolve_one(url):
                if endpoint not in found:
                    found.append(endpoint)
        return found

    def _resolve_one(self, url: str) -> list[Endpoint]:
        parsed = httpx.URL(url)
        host = parsed.host
        port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 80)
        header = host if parsed.port is None else f"{host}:{parsed.port}"
        if _literal(host):
            return [Endpoint(url, url, header)]
        addresses = self._dns(host) or self._system(host, port)
        if not addresses:
            # Unknown everywhere: connecting by the name reports the failure in the usual way.
            return [Endpoint(url, url, header)]
        return [Endpoint(url, _base(parsed.scheme, a, port), header) for a in sorted(addresses)]

    def _dns(self, host: str) -> list[str]:
        if self._resolver is None:
            return []
        addresses: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(host, kind, search=True)
            except (dns.exception.DNSException, OSError):
                continue
            addresses += [record.to_text() for record in answer]
        return addresses

    @staticmethod
    def _system(host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []
        return sorted({str(info[4][0]) for info in infos})


class Replicas:
    """The endpoints of a client's URLs and an HTTP client for each, made on first use and
    kept (so resolving again costs no new connection pools); or a fixed set of HTTP clients
    given as they are (``fixed``)."""

    def __init__(
        self,
        discovery: Discovery,
        timeout: httpx.Timeout,
        headers: dict[str, str] | None = None,
        hooks: dict[str, list[Callable[[httpx.Response], None]]] | None = None,
        auth: dict[str, str] | None = None,
    ) -> None:
        self.discovery = discovery
        #: Sent (with ``headers``) when a server is asked for its siblings: its API key.
        self.auth = dict(auth or {})
        self.timeout = timeout
        self.headers = dict(headers or {})
        #: httpx event hooks of every client made here (the client's version check).
        self.hooks = hooks or {}
        self._clients: dict[Endpoint, httpx.Client] = {}
        self._fixed: list[Endpoint] | None = None
        self._own: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()
        #: Each address's box's server ports (``augstream serve --servers``): learnt from a
        #: stream's header, or a sibling's answer when it was asked.
        self._ports: dict[str, list[int]] = {}
        #: When an address that did not answer is asked again, and the wait after that.
        self._ask_again: dict[str, tuple[float, float]] = {}

    @classmethod
    def fixed(cls, clients: Sequence[httpx.Client]) -> Replicas:
        """The given HTTP clients, one replica each, never resolved again."""
        urls = [str(client.base_url).rstrip("/") for client in clients]
        replicas = cls(Discovery(urls), httpx.Timeout(30.0))
        replicas._fixed = [Endpoint(url, url, httpx.URL(url).netloc.decode()) for url in urls]
        replicas._clients = dict(zip(replicas._fixed, clients, strict=True))
        return replicas

    @property
    def urls(self) -> list[str]:
        """The URLs as given."""
        return self.discovery.urls

    def endpoints(self) -> list[Endpoint]:
        """The endpoints as the names resolve now, each followed by its siblings: the other
        server processes of its box that a stream's header named (``learn``) and that
        answer there."""
        if self._fixed is not None:
            return list(self._fixed)
        found: list[Endpoint] = []
        for endpoint in self.discovery.resolve():
            for one in [endpoint, *self._siblings_of(endpoint)]:
                if one not in found:
                    found.append(one)
        return found

    def learn(self, endpoint: Endpoint, ports: list[int]) -> bool:
        """``endpoint``'s box runs server processes on ``ports`` (its stream header said so):
        whether that is news (the next ``endpoints()`` then has those that answer)."""
        if self._fixed is not None or not ports:
            return False
        with self._lock:
            known = self._ports.get(endpoint.address)
            self._ports[endpoint.address] = list(ports)
        return known != ports

    def _siblings_of(self, endpoint: Endpoint) -> list[Endpoint]:
        with self._lock:
            ports = self._ports.get(endpoint.address)
        if not ports:
            return []
        own = httpx.URL(endpoint.address).port
        found = []
        for port in ports:
            if port == own:
                continue
            # A sibling's port may not be reachable where this one is (behind a proxy), or
            # it may be starting: only one that answers, naming the same box, takes part.
            sibling = _at_port(endpoint, port)
            if self._asked(sibling.address, partial(self._sibling_ports, sibling)) == ports:
                found.append(sibling)
        return found

    def _asked(self, address: str, ask: Callable[[], list[int] | None]) -> list[int] | None:
        """``address``'s ``sibling_ports``, asked once it answers; until then asked again
        after a back-off (5 s, doubling to a minute), None meanwhile."""
        with self._lock:
            if address in self._ports:
                return self._ports[address]
            again_at, wait = self._ask_again.get(address, (0.0, _ASK_AGAIN_S))
            if time.monotonic() < again_at:
                return None
        answer = ask()
        with self._lock:
            if answer is None:
                self._ask_again[address] = (time.monotonic() + wait, min(60.0, 2 * wait))
            else:
                self._ports[address] = answer
        return answer

    def _sibling_ports(self, endpoint: Endpoint) -> list[int] | None:
        """``endpoint``'s ``sibling_ports``, None if it did not answer."""
        try:
            response = self.http(endpoint).get(
                "/v1/server",
                headers=self.auth,
                timeout=_ASK_TIMEOUT_S,
                extensions=endpoint.extensions,
            )
            if response.status_code != 200:
                return None
            return [int(port) for port in response.json().get("sibling_ports", [])]
        except (httpx.HTTPError, ValueError, TypeError):
            return None

    def adopt(self, url: str, client: httpx.Client) -> None:
        """Use ``client`` (closed by its owner) for the endpoint that is ``url`` itself (an
        address, or a name that resolves to nothing else): one connection pool per server."""
        with self._lock:
            self._own[url] = client

    def http(self, endpoint: Endpoint) -> httpx.Client:
        """The HTTP client of ``endpoint``."""
        with self._lock:
            if endpoint.address == endpoint.url and endpoint.url in self._own:
                return self._own[endpoint.url]
            client = self._clients.get(endpoint)
            if client is None:
                headers = {**self.headers, "Host": endpoint.host}
                client = httpx.Client(
                    base_url=endpoint.address,
                    timeout=self.timeout,
                    headers=headers,
                    event_hooks=dict(self.hooks),
                )
                self._clients[endpoint] = client
            return client

    def close(self) -> None:
        """Close every HTTP client made here (not the ones given to ``fixed``)."""
        if self._fixed is not None:
            return
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

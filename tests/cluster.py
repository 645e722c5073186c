"""A simulated cluster on loopback: replicas on distinct loopback addresses (127.0.0.2,
127.0.0.3, ...) on one port, as pods are, and one name for all of them answered by a real
DNS server on loopback, as a Kubernetes headless Service's is."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

#: The name the cluster's replicas answer to.
NAME = "augstream.test"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NameServer(BaseResolver):  # type: ignore[misc]
    """Answers ``NAME`` with the addresses in ``addresses`` (TTL 1 s), every other name with
    NXDOMAIN; counts the questions it was asked."""

    def __init__(self, name: str = NAME) -> None:
        self.name = name.rstrip(".") + "."
        self.addresses: list[str] = []
        self.questions = 0
        self._lock = threading.Lock()
        self.port = free_udp_port()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._server = DNSServer(self, port=self.port, address="127.0.0.1", logger=quiet)
        self._server.start_thread()

    @property
    def nameserver(self) -> str:
        """This server as ``AUGSTREAM_NAMESERVERS`` takes it."""
        return f"127.0.0.1:{self.port}"

    def set(self, *addresses: str) -> None:
        """Answer with exactly these addresses from now on."""
        with self._lock:
            self.addresses = list(addresses)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        with self._lock:
            self.questions += 1
            addresses = list(self.addresses)
        if str(question.qname).lower() != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply

    def close(self) -> None:
        self._server.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until it holds (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)

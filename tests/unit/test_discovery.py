"""Finding the replicas: a name resolved to every address through a real DNS server on
loopback, nameservers given as text, the largest group of agreeing fingerprints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from augstream._discovery import Discovery, Endpoint, nameservers_from
from augstream._fleet import agreeing, window_for
from tests.cluster import NAME, NameServer


@pytest.fixture
def dns() -> Iterator[NameServer]:
    server = NameServer()
    yield server
    server.close()


def test_one_name_stands_for_every_address_it_resolves_to(dns: NameServer) -> None:
    dns.set("127.0.0.3", "127.0.0.2")
    discovery = Discovery([f"http://{NAME}:8080"], nameservers_from(dns.nameserver))
    found = discovery.resolve()
    assert [e.address for e in found] == ["http://127.0.0.2:8080", "http://127.0.0.3:8080"]
    assert {e.host for e in found} == {f"{NAME}:8080"}  # the Host header names the service
    dns.set("127.0.0.2", "127.0.0.4")
    assert [e.address for e in discovery.resolve()][-1] == "http://127.0.0.4:8080"


def test_addresses_and_localhost_are_used_as_given_and_unknown_names_fall_through(
    dns: NameServer,
) -> None:
    discovery = Discovery(
        ["http://127.0.0.9:1", "http://localhost:2", "http://no-such-host.test:3"],
        nameservers_from(dns.nameserver),
        timeout=0.5,
    )
    assert discovery.resolve() == [
        Endpoint("http://127.0.0.9:1", "http://127.0.0.9:1", "127.0.0.9:1"),
        Endpoint("http://localhost:2", "http://localhost:2", "localhost:2"),
        # Unknown to the DNS and the C library: connecting by the name reports it.
        Endpoint("http://no-such-host.test:3", "http://no-such-host.test:3", "no-such-host.test:3"),
    ]


def test_tls_to_an_address_checks_the_certificate_against_the_name() -> None:
    endpoint = Endpoint("https://aug.lab:8443", "https://10.0.0.5:8443", "aug.lab:8443")
    assert endpoint.extensions == {"sni_hostname": "aug.lab"}
    assert Endpoint("http://a:1", "http://10.0.0.5:1", "a:1").extensions == {}


def test_nameservers_are_addresses_with_optional_ports() -> None:
    assert nameservers_from("10.0.0.10, 127.0.0.1:5353,[::1]:53") == [
        ("10.0.0.10", 53),
        ("127.0.0.1", 5353),
        ("::1", 53),
    ]
    assert nameservers_from("") == []
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        nameservers_from("dns.example.org")


def _endpoint(n: int) -> Endpoint:
    url = f"http://10.0.0.{n}:8080"
    return Endpoint(url, url, f"10.0.0.{n}:8080")


def test_the_largest_agreeing_group_is_kept_and_the_others_are_told_why() -> None:
    a, b, c, d = (_endpoint(n) for n in range(1, 5))
    native = {"warp.1": "aa", "decode": "dd"}
    baseline = {"warp.1": "bb", "decode": "dd"}
    kept, left_out = agreeing({a: baseline, b: native, c: native, d: None}, ["decode", "warp.1"])
    assert kept == [b, c, d]  # d did not answer: its stream's header is checked later
    assert set(left_out) == {a}
    assert "warp.1" in left_out[a] and "decode" not in left_out[a]
    # A tie goes to the group of the earliest endpoint.
    kept, left_out = agreeing({a: baseline, b: native}, ["warp.1"])
    assert kept == [a] and set(left_out) == {b}
    # Families the spec does not use do not matter.
    kept, left_out = agreeing({a: baseline, b: native}, ["decode"])
    assert kept == [a, b] and not left_out


def test_the_reorder_buffer_is_bounded_whatever_the_number_of_replicas() -> None:
    assert window_for(4, 1) == 4
    assert window_for(4, 3) == 24
    assert window_for(4, 8) == window_for(4, 64) == 64

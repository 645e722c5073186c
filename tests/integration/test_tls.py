"""Streams over HTTPS (a lab's server behind TLS): the client reads the body from the TLS
socket as it does from a plain one, and the batches are the plain server's, byte for byte."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

import augstream._body as body_module
from augstream import Client
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from benchmarks.comparison.process import free_port

SPEC = dict(dataset="pets", target_size=(16, 16), batch_size=4, seed=3, epochs=1, rotation_range=15)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def https_url(image_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    cert_file, key_file = self_signed(tmp_path)
    # How a lab trusts its own certificate: httpx reads SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    port = free_port()
    config = uvicorn.Config(
        create_app(Settings(datasets=[image_root])),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTPS server did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_stream_over_https_is_read_from_the_tls_socket_and_is_the_same(
    https_url: str, image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast: list[bool] = []
    real = body_module._socket_body

    def watched(response: object) -> object:
        found = real(response)  # type: ignore[arg-type]
        fast.append(found is not None)
        return found

    monkeypatch.setattr(body_module, "_socket_body", watched)
    with Client(https_url) as client, client.stream(**SPEC) as stream:
        secure = list(stream)
    assert fast == [True]
    with (
        BackgroundServer(create_app(Settings(datasets=[image_root]))) as server,
        Client(server.url) as client,
        client.stream(**SPEC) as stream,
    ):
        plain = list(stream)
    assert len(secure) == len(plain) == 5  # 19 images, batches of 4
    for (x1, y1), (x2, y2) in zip(secure, plain, strict=True):
        assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()

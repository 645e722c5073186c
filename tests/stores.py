"""Object stores for the tests, on loopback: moto's S3 server (with credentials checked) in
its own process, and the standard library's HTTP file server in a thread."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.reliability.conftest import free_port

REGION = "us-east-1"


class S3Server:
    """moto's standalone S3 server that checks signatures: after the few unsigned calls that
    create its one user, only ``key``/``secret`` open it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = self.secret = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        # moto lets this many requests through unsigned: the three IAM calls below, and a
        # margin (requests signed by the key they create pass anyway).
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6"}
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:  # a bare connection: an HTTP probe would count as a request
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError("moto's S3 server did not come up") from None
                time.sleep(0.1)
        iam = self.client("iam", key="unsigned", secret="unsigned")
        iam.create_user(UserName="lab")
        statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        iam.put_user_policy(UserName="lab", PolicyName="s3", PolicyDocument=json.dumps(policy))
        access = iam.create_access_key(UserName="lab")["AccessKey"]
        self.key, self.secret = access["AccessKeyId"], access["SecretAccessKey"]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)

    def client(self, service: str = "s3", key: str = "", secret: str = "") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key or self.key,
            aws_secret_access_key=secret or self.secret,
        )

    def upload(self, bucket: str, prefix: str, folder: Path) -> int:
        """Put every file below ``folder`` into ``bucket`` under ``prefix``; returns the count."""
        s3 = self.client()
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
        files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
        for path in files:
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        return len(files)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpFileServer:
    """``folder`` over plain HTTP (no listing a client may rely on; ranges ignored)."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpFileServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_manifest(folder: Path, name: str = "manifest.csv") -> Path:
    """A manifest of ``folder``'s class subfolders in Keras' order (path, label per row)."""
    from augstream_service.sources import list_class_folders
    from augstream_service.stores import Store

    listing = list_class_folders(Store(str(folder)))
    rows = ["path,label"] + [
        f"{path},{listing.class_names[label]}"
        for path, label in zip(listing.files, listing.labels.tolist(), strict=True)
    ]
    manifest = folder / name
    manifest.write_text("\n".join(rows) + "\n")
    return manifest

"""The container's start command, run outside Docker (there is no engine here): the
Dockerfile's entry point and environment, the compose file's command and environment for the
augstream service and the sample-data job, and the image's config file, against moto's S3
server standing in for MinIO. Only what cannot be the same on this host is changed: the
MinIO address, where the secrets and uploads live, the listening address and port."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from augstream import Client
from tests.stores import REGION, S3Server, free_port

pytestmark = pytest.mark.slow

DOCKER = Path(__file__).resolve().parents[2] / "docker"
BIN = Path(sys.executable).parent


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            continue  # comment lines inside a continued instruction are dropped too
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    final = [i for i, line in enumerate(joined) if line.upper().startswith("FROM ")][-1]
    return [tuple(line.split(" ", 1)) for line in joined[final:]]  # type: ignore[misc]


def image_environment(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for name, arguments in instructions:
        if name == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def instruction(instructions: list[tuple[str, str]], name: str) -> str:
    return next(arguments for found, arguments in instructions if found == name)


def interpolate(value: str) -> str:
    """Compose's interpolation with only the defaults (a fresh checkout, no .env):
    ``${NAME:-default}`` is the default, ``$$`` a literal ``$``."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def test_the_containers_start_command_serves_the_sample_bucket(
    compose: dict[str, Any], tmp_path: Path, s3_server: S3Server
) -> None:
    image = dockerfile_instructions(DOCKER / "Dockerfile")
    entrypoint = json.loads(instruction(image, "ENTRYPOINT"))
    assert entrypoint[0] == "augstream"
    service = compose["services"]["augstream"]
    job = compose["services"]["sample-data"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    s3 = s3_server
    (secrets / "minio_user").write_text(s3.key + "\n")
    (secrets / "minio_password").write_text(s3.secret + "\n")
    (secrets / "augstream_keys").write_text("lab-key-1\n")
    moved = {"/run/secrets/": f"{secrets}/", "http://minio:9000": s3.url}

    # The one-shot job: its shell line, with the secrets it reads and MinIO moved here.
    line = interpolate(job["command"][0])
    for old, new in moved.items():
        line = line.replace(old, new)
    job_env = {k: interpolate(str(v)) for k, v in job["environment"].items()}
    job_env = {**job_env, "AWS_ENDPOINT_URL": s3.url, "AWS_DEFAULT_REGION": REGION}
    job_env["SAMPLE_PER_CLASS"] = "10"
    line = line.replace("exec python", f"exec {shlex.quote(sys.executable)}")
    done = subprocess.run(
        ["/bin/sh", "-c", line],
        env={**os.environ, **job_env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 30 images in 3 classes" in done.stdout

    # The service: the image's entry point and environment, compose's command and
    # environment, the image's config file.
    port = free_port()
    command = [str(BIN / "augstream"), *entrypoint[1:]]
    for argument in service["command"]:
        argument = argument.replace("/run/secrets/", f"{secrets}/")
        argument = {"/etc/augstream/augstream.toml": str(DOCKER / "augstream.toml")}.get(
            argument, argument
        )
        command.append({"0.0.0.0": "127.0.0.1", "8080": str(port)}.get(argument, argument))
    env = {**os.environ, **image_environment(image)}
    env.update({k: interpolate(str(v)) for k, v in service["environment"].items()})
    env["AUGSTREAM_UPLOAD_DIR"] = str(tmp_path / "uploads")
    # The config file names MinIO and the secrets' mount points: moved like the job's.
    prefix = "AUGSTREAM_CATALOG__SHAPES__STORAGE_OPTIONS"
    env[f"{prefix}__ENDPOINT_URL"] = s3.url
    env[f"{prefix}_FILES__KEY"] = str(secrets / "minio_user")
    env[f"{prefix}_FILES__SECRET"] = str(secrets / "minio_password")
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        healthy = json.loads(instruction(image, "HEALTHCHECK").split(" CMD ", 1)[1])
        healthy = [h.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for h in healthy]
        healthy[0] = sys.executable if healthy[0] == "python" else healthy[0]
        deadline = time.monotonic() + 60
        while subprocess.run(healthy, capture_output=True, timeout=30).returncode != 0:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz", timeout=30).json()["status"] == "ready"
        assert httpx.get(f"{url}/v1/datasets", timeout=30).status_code == 401
        with Client(url, api_key="lab-key-1") as client:
            [shapes] = client.datasets()
            assert (shapes.name, shapes.samples) == ("shapes", 30)
            assert sorted(shapes.class_indices) == ["circle", "square", "triangle"]
            with client.stream(dataset="shapes", target_size=(32, 32), batch_size=8) as stream:
                x, y = next(stream)
                assert x.shape == (8, 32, 32, 3) and y.shape == (8, 3)
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal (docker stop sees 143).
        assert server.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert s3.secret not in text and "lab-key-1" not in text

"""The Kubernetes deployment (deploy/kubernetes/), checked without a cluster or a container
engine: every kustomization rendered by kubectl's kustomize, every rendered object validated
against Kubernetes 1.31's schemas (strictly: an unknown field fails), the properties the
operator's page promises asserted on the rendered objects, and the single-node overlay's pod
run outside a container: its init container's and its server's commands, environment,
secrets and config file, with only the volumes' mount points, the address and the port moved.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI

from augstream import Client
from augstream_service.auth import OPEN_PATHS
from augstream_service.server import server_config
from augstream_service.settings import Settings, load_settings
from tests.integration.test_container import dockerfile_instructions, image_environment, instruction
from tests.stores import free_port

KUBERNETES = "1.31.0"
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
#: Every kustomization, base included; overlays are those that deploy the replicas.
KUSTOMIZATIONS = sorted(
    str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml")
)
OVERLAYS = [k for k in KUSTOMIZATIONS if k.startswith("overlays/")]
SERVER_IMAGE = dockerfile_instructions(ROOT / "docker" / "Dockerfile")
TRAINER_IMAGE = dockerfile_instructions(ROOT / "docker" / "trainer" / "Dockerfile")
#: A 224x224x3 batch of 32 as the server holds it (uint8): the unit of the memory arithmetic.
BATCH_BYTES = 32 * 224 * 224 * 3
#: The server process at rest, before its caches fill (README: 93-101 MiB measured).
AT_REST_BYTES = 100 << 20
#: The label the replicas' NetworkPolicy admits trainers by.
CLIENT_LABEL = {"augstream.io/client": "true"}
#: What the autoscaler reads: trainers' waiting, per replica (from prometheus-adapter).
WAIT_METRIC = "augstream_input_wait_ratio"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: it renders the kustomizations (kubectl kustomize)",
)


def _no_secrets(folder: str, names: list[str]) -> list[str]:
    """Never copy an operator's real secrets into the test's tree."""
    return [n for n in names if Path(folder).name == "secrets" and n != ".gitignore"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each kustomization's objects, after make-secrets.sh wrote each overlay's secrets (the
    store's credentials are placeholders)."""
    tree = tmp_path_factory.mktemp("deploy") / "kubernetes"
    shutil.copytree(DEPLOY, tree, ignore=_no_secrets)
    store = {"STORE_ACCESS_KEY_ID": "placeholder-id", "STORE_SECRET_ACCESS_KEY": "placeholder"}
    for overlay in OVERLAYS:
        name = overlay.split("/", 1)[1]
        subprocess.run(
            ["/bin/sh", str(tree / "make-secrets.sh"), name],
            env={**os.environ, **store},
            check=True,
            capture_output=True,
        )
    objects = {}
    for kustomization in KUSTOMIZATIONS:
        done = subprocess.run(
            ["kubectl", "kustomize", str(tree / kustomization)], capture_output=True, text=True
        )
        assert done.returncode == 0, f"{kustomization}: {done.stderr}"
        objects[kustomization] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return objects


Objects = list[dict[str, Any]]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Objects]) -> Objects:
    """The objects of each overlay in turn (those that deploy the replicas)."""
    objects: Objects = rendered[request.param]
    return objects


def find(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name or 'anything'}"
    return found[0]


@dataclass
class Workload:
    """A Deployment's or Job's pod template and its first container, read from a render."""

    objects: Objects
    item: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.item["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        first: dict[str, Any] = self.pod["containers"][0]
        return first

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.item["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def namespace(self) -> str:
        return str(self.item["metadata"]["namespace"])

    def volume(self, name: str) -> dict[str, Any]:
        volume: dict[str, Any]
        [volume] = [v for v in self.pod["volumes"] if v["name"] == name]
        return volume

    def env(self) -> dict[str, str]:
        """The container's environment, secret references read from the render's Secrets."""
        values = {}
        for variable in self.container.get("env", []):
            if "value" in variable:
                values[variable["name"]] = variable["value"]
            else:
                ref = variable["valueFrom"]["secretKeyRef"]
                data = find(self.objects, "Secret", ref["name"])["data"]
                values[variable["name"]] = base64.b64decode(data[ref["key"]]).decode()
        return values

    def files(self, container: dict[str, Any] | None = None) -> dict[str, str]:
        """Path -> text of every file the container's ConfigMap and Secret volumes hold
        (each volume's object looked up in the render: a misspelt name fails here)."""
        files = {}
        for mount in (container or self.container)["volumeMounts"]:
            volume = self.volume(mount["name"])
            if "configMap" in volume:
                data = find(self.objects, "ConfigMap", volume["configMap"]["name"])["data"]
            elif "secret" in volume:
                data = find(self.objects, "Secret", volume["secret"]["secretName"])["data"]
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            else:
                continue
            files.update({f"{mount['mountPath']}/{name}": text for name, text in data.items()})
        return files

    def port(self, port: str | int) -> int:
        """A port given by number or by the container's name for it."""
        named = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        return port if isinstance(port, int) else int(named[port])

    def arg(self, option: str) -> str:
        args: list[str] = self.container["args"]
        return args[args.index(option) + 1]


def replicas(objects: Objects) -> Workload:
    return Workload(objects, find(objects, "Deployment", "augstream"))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (2, 500m, 1792Mi, 3Gi) as a number."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|)", str(value))
    assert match, f"{value!r} is not a quantity this test reads"
    scale = {"": 1, "m": 1e-3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    return float(match[1]) * scale[match[2]]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_follows_the_kubernetes_schema(
    rendered: dict[str, Objects], kustomization: str
) -> None:
    assert rendered[kustomization]
    for item in rendered[kustomization]:
        kubernetes_validate.validate(item, KUBERNETES, strict=True)


def test_the_server_runs_the_images_own_command(overlay: Objects) -> None:
    server = replicas(overlay)
    assert server.container["command"] == json.loads(instruction(SERVER_IMAGE, "ENTRYPOINT"))
    assert server.container["args"] == json.loads(instruction(SERVER_IMAGE, "CMD"))
    assert server.container["image"].rsplit("/", 1)[-1] == "augstream:0.1.0"
    for init in server.pod.get("initContainers", []):
        assert init["image"] == server.container["image"], init["name"]


def test_probes_ask_the_open_health_routes_on_the_served_port(overlay: Objects) -> None:
    server = replicas(overlay)
    served = int(server.arg("--port"))
    assert served == int(instruction(SERVER_IMAGE, "EXPOSE"))
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = server.container[probe]["httpGet"]
        assert server.port(get["port"]) == served, probe
        assert get["path"] in OPEN_PATHS, f"{probe}: {get['path']} needs an API key"
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


def test_every_container_runs_unprivileged_on_a_read_only_root(
    rendered: dict[str, Objects],
) -> None:
    workloads = [
        (instruction(SERVER_IMAGE if o["kind"] == "Deployment" else TRAINER_IMAGE, "USER"), o)
        for objects in rendered.values()
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]
    assert len(workloads) == len(OVERLAYS) + 2  # the base's and each overlay's, the trainer
    for user, item in workloads:
        pod = item["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            context = {**pod["securityContext"], **container["securityContext"]}
            name = container["name"]
            assert context["runAsNonRoot"] is True, name
            assert str(context["runAsUser"]) == user, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
    for name in OVERLAYS:
        labels = find(rendered[name], "Namespace")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        server = replicas(rendered[name])
        writable = {
            m["mountPath"]
            for m in server.container["volumeMounts"]
            if "emptyDir" in server.volume(m["name"])
        }
        uploads = image_environment(SERVER_IMAGE)["AUGSTREAM_UPLOAD_DIR"]
        assert {uploads, "/tmp"} <= writable


def test_a_stopping_replica_has_time_to_hand_its_streams_over(overlay: Objects) -> None:
    server = replicas(overlay)
    assert server.pod["enableServiceLinks"] is False  # AUGSTREAM_SERVICE_HOST... are no settings
    sleep = server.container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 5  # CoreDNS caches answers for 5 s
    go_away = server_config(FastAPI(), "127.0.0.1", 0, "info").timeout_graceful_shutdown
    assert go_away is not None  # without a bound uvicorn waits for streams for ever
    assert int(sleep[1]) + go_away < server.pod["terminationGracePeriodSeconds"]
    assert server.item["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_services_budget_and_spread_select_the_replicas(overlay: Objects) -> None:
    server = replicas(overlay)
    assert selects(server.item["spec"]["selector"]["matchLabels"], server.labels)
    headless = find(overlay, "Service", "augstream-replicas")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is False
    for service in (headless, find(overlay, "Service", "augstream")["spec"]):
        assert selects(service["selector"], server.labels)
        [port] = service["ports"]
        assert server.port(port["targetPort"]) == port["port"] == int(server.arg("--port"))
    budget = find(overlay, "PodDisruptionBudget", "augstream")["spec"]
    assert selects(budget["selector"]["matchLabels"], server.labels)
    assert budget["maxUnavailable"] == 1
    spread = {c["topologyKey"]: c for c in server.pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    anti = server.pod["affinity"]["podAntiAffinity"]
    [apart] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    for term in [*spread.values(), apart["podAffinityTerm"]]:
        assert selects(term["labelSelector"]["matchLabels"], server.labels)


def test_the_autoscaler_scales_the_replicas_on_cpu_and_on_trainers_waiting(
    rendered: dict[str, Objects],
) -> None:
    server = replicas(rendered["overlays/lab"])
    assert "replicas" not in server.item["spec"]  # the autoscaler owns the count
    autoscaler = find(rendered["overlays/lab"], "HorizontalPodAutoscaler", "augstream")["spec"]
    target = autoscaler["scaleTargetRef"]
    named = server.item["metadata"]["name"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        named,
    )
    assert autoscaler["minReplicas"] >= 2
    metrics = {m["type"]: m for m in autoscaler["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    wait = metrics["Pods"]["pods"]
    assert wait["metric"]["name"] == WAIT_METRIC
    assert wait["target"]["type"] == "AverageValue"
    assert autoscaler["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # One replica and no autoscaler on a single node.
    single = rendered["overlays/single-node"]
    assert not [o for o in single if o["kind"] == "HorizontalPodAutoscaler"]
    assert replicas(single).item["spec"]["replicas"] == 1


def test_prometheus_scrapes_the_replicas_and_the_adapter_serves_the_wait_metric(
    rendered: dict[str, Objects],
) -> None:
    server = replicas(rendered["overlays/lab"])
    monitoring = rendered["monitoring"]
    rules = find(monitoring, "ConfigMap", "augstream-adapter-rules")["data"]["config.yaml"]
    [rule] = yaml.safe_load(rules)["rules"]
    assert rule["name"]["as"] == WAIT_METRIC
    assert rule["seriesQuery"].startswith("augstream_input_wait_seconds_total{")
    assert re.search(r"rate\(<<\.Series>>\{<<\.LabelMatchers>>\}\[1m\]\)", rule["metricsQuery"])
    page = (ROOT / "docs" / "operators" / "cluster.md").read_text()
    [shown] = re.findall(r"```yaml\n( *rules:\n.*?)```", page, re.DOTALL)
    assert yaml.safe_load(textwrap.dedent(shown)) == yaml.safe_load(rules), "the page's rule"
    overrides = {label: o["resource"] for label, o in rule["resources"]["overrides"].items()}
    assert overrides == {"namespace": "namespace", "pod": "pod"}
    # The scrape job gives every series the labels the rule maps to objects, finds the pods
    # by their annotations, and sends a key (/metrics is not an open path).
    scrape = find(monitoring, "ConfigMap", "augstream-scrape-config")["data"]["augstream.yaml"]
    [job] = yaml.safe_load(scrape)["scrape_configs"]
    assert set(overrides) <= {r.get("target_label") for r in job["relabel_configs"]}
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [server.namespace]
    annotations = server.item["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == int(server.arg("--port"))
    assert annotations["prometheus.io/path"] == "/metrics" not in OPEN_PATHS
    assert job["authorization"]["credentials_file"].startswith("/")


def test_the_network_policy_admits_trainers_and_prometheus_and_reaches_the_store(
    rendered: dict[str, Objects], overlay: Objects
) -> None:
    server = replicas(overlay)
    policy = find(overlay, "NetworkPolicy", "augstream")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], server.labels)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert [server.port(p["port"]) for p in ingress["ports"]] == [int(server.arg("--port"))]
    trainer = Workload(rendered["trainer"], find(rendered["trainer"], "Job"))
    assert CLIENT_LABEL.items() <= trainer.labels.items()
    peers = [(p.get("namespaceSelector"), p.get("podSelector")) for p in ingress["from"]]
    assert ({}, {"matchLabels": CLIENT_LABEL}) in peers  # trainers, in any namespace
    scrape_config = find(rendered["monitoring"], "ConfigMap", "augstream-scrape-config")
    prometheus = {"kubernetes.io/metadata.name": scrape_config["metadata"]["namespace"]}
    assert ({"matchLabels": prometheus}, None) in peers
    allowed = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert 53 in allowed  # DNS
    for dataset in (
        tomllib.loads(server.files()[server.arg("--config")]).get("catalog", {}).values()
    ):
        url = dataset.get("storage_options", {}).get("endpoint_url") or dataset["url"]
        if "://" in url:
            parsed = httpx.URL(url)
            port = parsed.port or {"http": 80}.get(parsed.scheme, 443)
            assert port in allowed, f"{dataset['url']}: no egress to port {port}"


def test_the_config_file_settings_and_secrets_are_the_servers(
    overlay: Objects, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = replicas(overlay)
    assert {o["metadata"].get("namespace", server.namespace) for o in overlay} == {server.namespace}
    env = server.env()
    for name in env:
        field = name.removeprefix("AUGSTREAM_").split("__")[0].lower()
        assert name.startswith("AUGSTREAM_") and field in Settings.model_fields, name
    for name in [n for n in os.environ if n.startswith("AUGSTREAM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    files = server.files()
    config = tmp_path / "augstream.toml"
    config.write_text(files[server.arg("--config")])
    settings = load_settings(config)
    assert settings.catalog and len(settings.api_keys) == 2
    # Every file the catalog reads credentials from is in a Secret mounted there.
    for dataset in settings.catalog.values():
        assert {str(path) for path in dataset.storage_options_files.values()} <= set(files)


def test_requests_and_limits_follow_the_settings(overlay: Objects) -> None:
    server = replicas(overlay)
    env = server.env()
    names = ("threads", "prefetch", "max_streams", "byte_cache_bytes", "image_cache_bytes")
    names += ("batch_cache_bytes",)
    setting = {name: int(env[f"AUGSTREAM_{name.upper()}"]) for name in names}
    requests, limits = (server.container["resources"][k] for k in ("requests", "limits"))
    assert quantity(requests["cpu"]) == quantity(limits["cpu"]) == setting["threads"]
    caches = sum(setting[name] for name in names if name.endswith("_cache_bytes"))
    assert quantity(requests["memory"]) >= caches + (512 << 20)
    streams = setting["max_streams"] * setting["prefetch"] * BATCH_BYTES
    assert quantity(limits["memory"]) >= AT_REST_BYTES + caches + streams
    uploads = server.volume("uploads")["emptyDir"]["sizeLimit"]
    assert int(env["AUGSTREAM_UPLOAD_STORE_BYTES"]) < quantity(uploads)


def test_the_trainer_asks_for_a_gpu_and_reads_every_replica(
    rendered: dict[str, Objects],
) -> None:
    trainer = Workload(rendered["trainer"], find(rendered["trainer"], "Job"))
    assert trainer.container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert trainer.container["image"].rsplit("/", 1)[-1] == "augstream-trainer:0.1.0"
    url = httpx.URL(trainer.env()["AUGSTREAM_URL"])
    train = (ROOT / "docker" / "trainer" / "train.py").read_text()
    for name in OVERLAYS:
        server = replicas(rendered[name])
        assert trainer.namespace == server.namespace
        headless = find(rendered[name], "Service", "augstream-replicas")
        assert url.host == f"{headless['metadata']['name']}.{server.namespace}.svc.cluster.local"
        assert url.port == headless["spec"]["ports"][0]["port"]
        # The key train.py reads, from the Secret each overlay writes under that very name,
        # is one of the server's keys.
        [(path, key)] = Workload(rendered[name], trainer.item).files().items()
        assert f'Path("{path}")' in train
        assert key.strip() in json.loads(server.env()["AUGSTREAM_API_KEYS"])


@pytest.mark.slow
def test_the_single_node_pod_runs_outside_a_container(
    rendered: dict[str, Objects], tmp_path: Path
) -> None:
    """The init container draws the sample, the server serves it with the overlay's config
    file and keys, probes and clients get what the manifests say, and SIGTERM with a stream
    open stops the server within the grace period the preStop sleep leaves."""
    server = replicas(rendered["overlays/single-node"])
    [init] = server.pod["initContainers"]
    # Each volume is a folder here, holding its ConfigMap's or Secret's files.
    folders = {v["name"]: tmp_path / v["name"] for v in server.pod["volumes"]}
    for folder in folders.values():
        folder.mkdir()

    def moved(text: str, container: dict[str, Any]) -> str:
        """``text`` with the container's mount points replaced by their volumes' folders."""
        mounts = {m["mountPath"]: str(folders[m["name"]]) for m in container["volumeMounts"]}
        points = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w./-])({points})(?=/|\b)", lambda m: mounts[m[1]], text)

    for path, text in server.files().items():  # the config file names /data: moved too
        Path(moved(path, server.container)).write_text(moved(text, server.container))
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUGSTREAM_")}
    image = image_environment(SERVER_IMAGE)
    python = {"python": sys.executable}
    drawn = subprocess.run(
        [python.get(a, moved(a, init)) for a in init["command"]],
        env={**base, **{k: moved(v, init) for k, v in image.items()}},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drawn.returncode == 0, drawn.stderr

    port = free_port()
    here = {"augstream": str(Path(sys.executable).parent / "augstream"), "0.0.0.0": "127.0.0.1"}
    here[server.arg("--port")] = str(port)
    command = [here.get(a, moved(a, server.container)) for a in server.container["command"]]
    command += [here.get(a, moved(a, server.container)) for a in server.container["args"]]
    env = {**base, **{k: moved(v, server.container) for k, v in {**image, **server.env()}.items()}}
    keys = json.loads(env["AUGSTREAM_API_KEYS"])
    client_key = base64.b64decode(
        find(server.objects, "Secret", "augstream-client-key")["data"]["augstream_keys"]
    ).decode()
    [metrics_key] = [k for k in keys if k != client_key]
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(url + server.container["startupProbe"]["httpGet"]["path"]):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        ready = httpx.get(url + server.container["readinessProbe"]["httpGet"]["path"], timeout=30)
        assert ready.json()["status"] == "ready"
        assert httpx.get(f"{url}/v1/datasets", timeout=30).status_code == 401
        scrape = (
            url + server.item["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        )
        assert httpx.get(scrape, timeout=30).status_code == 401
        metrics = httpx.get(scrape, headers={"authorization": f"Bearer {metrics_key}"}, timeout=30)
        assert metrics.status_code == 200 and "augstream_images_total" in metrics.text
        # The counter the autoscaler's rule reads is exported (its samples follow reports).
        assert "# TYPE augstream_input_wait_seconds_total counter" in metrics.text
        with Client(url, api_key=client_key) as client:
            [shapes] = client.datasets()
            assert (shapes.name, shapes.samples) == ("shapes", 300)
            with client.stream(dataset="shapes", target_size=(32, 32), batch_size=8) as stream:
                assert next(stream)[0].shape == (8, 32, 32, 3)
                stopping = time.monotonic()
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
                stopped = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    sleep = int(server.container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert stopped < server.pod["terminationGracePeriodSeconds"] - sleep
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert client_key not in text and metrics_key not in text


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False

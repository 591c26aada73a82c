"""deploy/ and the Dockerfile: manifests valid offline, and their facts hold.

The Kubernetes manifests are checked against the Kubernetes JSON schemas that
``kubernetes-validate`` ships (no cluster, no network); the kustomizations (the
base, and the shared-state overlay beside it) are rendered here for what they
use, and by a ``kustomize`` or ``kubectl`` binary when one is at hand. The
Dockerfile's entrypoint and the Deployment's pod are run as processes, outside
a container; the overlay's pod with a real ``redis-server``.
"""

from __future__ import annotations

import configparser
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from mockai_tw.config import Config, ConfigError, is_secret
from mockai_tw.config_load import load_config, parse_config
from mockai_tw.state.url import parse_url
from tests.redisserver import RedisServer
from tests.test_daemon import TWISTD, Twistd, environ

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
#: The shared-state overlay: the base plus a Redis (a sibling of the base, as
#: kustomize refuses a base that contains its overlay).
KUBERNETES_REDIS = os.path.join(DEPLOY, "kubernetes-redis")
STACK = os.path.join(DEPLOY, "docker-stack.yml")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
#: The oldest Kubernetes whose schemas kubernetes-validate ships, and its newest.
KUBERNETES_VERSIONS = ("1.25", kubernetes_validate.latest_version())
#: What the tests say when GET /ready is not there to check.
NO_READY = (
    "GET /ready is not served yet (the graceful-drain work adds it); /health,"
    " SIGTERM and the exit status were checked, /ready was not"
)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def documents(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(read(path)) if d is not None]


def seconds(duration: str | int | float) -> float:
    """A Docker or systemd duration (``45s``, ``1m30s``, ``500ms``, ``45``)."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", duration.strip())
    assert parts and "".join(n + u for n, u in parts) == duration.replace(" ", "")
    return sum(float(n) * units[u or "s"] for n, u in parts)


def stop_budget(config: Config) -> float:
    """How long a process may take after SIGTERM: the ready grace, the drain."""
    return config.shutdown.ready_grace_s + config.shutdown.drain_timeout_s


# --- the Dockerfile --------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined (comment
    lines are dropped, inside a continuation too, as Docker does)."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in read(DOCKERFILE).splitlines():
        if line.lstrip().startswith("#") or not (pending or line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def image_env() -> dict[str, str]:
    """The ``ENV`` of the image (``KEY=value`` pairs)."""
    env: dict[str, str] = {}
    for rest in instruction("ENV"):
        for pair in shlex.split(rest):
            key, equals, value = pair.partition("=")
            assert equals, f"ENV {rest}: use the KEY=value form"
            env[key] = value
    return env


def image_extras() -> set[str]:
    """The extras of the image's ``pip install "/src[...]"``."""
    found = [
        extras
        for run in instruction("RUN")
        for extras in re.findall(r"/src\[([^\]]*)\]", run)
    ]
    assert len(found) == 1, f"one pip install of /src[extras]: {found}"
    return {extra.strip() for extra in found[0].split(",")}


def setup_extras() -> dict[str, list[str]]:
    """setup.cfg's extras, each with its requirements."""
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    return {
        name: value.split() for name, value in setup["options.extras_require"].items()
    }


def image_command(config_path: str) -> list[str]:
    """The exact ENTRYPOINT, then CMD, with the config at ``config_path``."""
    (entrypoint,) = instruction("ENTRYPOINT")
    argv: list[str] = json.loads(entrypoint)
    assert "--config=/app/config.yaml" in argv, argv
    cmd = instruction("CMD")
    argv += json.loads(cmd[-1]) if cmd else []
    return [a.replace("/app/config.yaml", config_path) for a in argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """A spawned command (``twistd`` from this venv in place of ``argv[0]``)."""

    def __init__(self, case: TestCase, argv: list[str], env: Mapping[str, str]):
        assert argv[0] == "twistd", argv
        self.protocol = Twistd()
        workdir = case.mktemp()
        os.makedirs(workdir)
        self.transport = reactor.spawnProcess(
            self.protocol, TWISTD, [TWISTD, *argv[1:]], env=dict(env), path=workdir
        )
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        case.addCleanup(self.kill)

    def kill(self) -> Deferred[int | None] | None:
        if self.protocol.ended.called:
            return None
        self.transport.signalProcess("KILL")
        return self.protocol.ended

    async def get(self, url: str) -> int:
        response = await treq.get(url, pool=self.pool)
        await treq.content(response)
        code: int = response.code
        return code

    async def until_up(self, url: str, timeout: float = 30.0) -> None:
        """Probe ``url`` as a startup probe does, until it answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            if self.protocol.ended.called:
                raise AssertionError(f"exited: {self.protocol.err[-2000:]!r}")
            try:
                if await self.get(url) == 200:
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await deferLater(reactor, 0.1)

    async def stop(self, signame: str) -> tuple[int | None, float]:
        """Send ``signame`` (``SIGTERM``); the exit status and how long it took."""
        await self.pool.closeCachedConnections()
        started = time.monotonic()
        self.transport.signalProcess(signame.removeprefix("SIG"))
        code = await self.protocol.ended
        return code, time.monotonic() - started


class DockerfileTests(TestCase):
    def test_stop_signal_workers_and_tls(self) -> None:
        self.assertEqual(instruction("STOPSIGNAL"), ["SIGTERM"])
        # ssl: endpoints work in the image: it installs the tls extra.
        self.assertIn("tls", image_extras())
        self.assertEqual(image_env().get("MOCKAI_WORKERS"), "1")
        # The variable is a real setting, and so is its override.
        for value in ("1", "4"):
            config = parse_config(
                {"access_token": "sk-x"}, {"MOCKAI_WORKERS": value}, source="-"
            )
            self.assertEqual(config.workers, int(value))

    def test_the_extras(self) -> None:
        """exact token counts, ssl: listeners and ``MOCKAI_STATE__BACKEND=redis``
        (the Redis client) work in the image; each extra is one setup.cfg
        declares."""
        extras = image_extras()
        self.assertLessEqual({"exact", "tls", "redis"}, extras)
        declared = setup_extras()
        self.assertLessEqual(extras, declared.keys())
        self.assertTrue(
            any(r.startswith("txredisapi") for r in declared["redis"]),
            declared["redis"],
        )

    async def test_entrypoint_serves_and_stops_on_sigterm(self) -> None:
        """The image's command, run here: the bundled config (a copy), the
        image's ENV, a free port appended as ``docker run IMAGE --listen=...``
        would; it serves /health and /ready and exits 0 on its STOPSIGNAL."""
        config_path = os.path.abspath(self.mktemp() + ".yaml")
        shutil.copy(os.path.join(ROOT, "config.yaml"), config_path)
        port = free_port()
        argv = [*image_command(config_path), f"--listen=tcp:{port}:interface=127.0.0.1"]
        process = Process(self, argv, {**environ(), **image_env()})
        root = f"http://127.0.0.1:{port}"
        await process.until_up(root + "/health")

        # The HEALTHCHECK's own command, pointed at this port.
        (healthcheck,) = instruction("HEALTHCHECK")
        probe = json.loads(healthcheck.split(" CMD ", 1)[1])
        self.assertIn("http://localhost:8082/health", probe)
        if shutil.which(probe[0]):
            probe = [a.replace("localhost:8082", f"127.0.0.1:{port}") for a in probe]
            _, err, code = await getProcessOutputAndValue(
                shutil.which(probe[0]) or probe[0], probe[1:], env=dict(os.environ)
            )
            self.assertEqual(code, 0, err)

        ready = await process.get(root + "/ready")
        self.assertIn(ready, (200, 404))
        (stopsignal,) = instruction("STOPSIGNAL")
        code, took = await process.stop(stopsignal)
        self.assertEqual(code, 0, (process.protocol.out + process.protocol.err)[-2000:])
        budget = stop_budget(load_config(config_path, {}))
        self.assertLess(took, budget)
        self.assertNotIn(b"Traceback", process.protocol.out + process.protocol.err)
        if ready == 404:
            raise SkipTest(NO_READY)
        self.assertEqual(ready, 200)


# --- Kubernetes ---------------------------------------------------------------


Resources = dict[tuple[str, str], dict[str, Any]]


def kustomization(directory: str) -> dict[str, Any]:
    (doc,) = documents(os.path.join(directory, "kustomization.yaml"))
    return doc


def patch_files(directory: str) -> list[str]:
    return sorted(p["path"] for p in kustomization(directory).get("patches", []))


def manifest_files(directory: str = KUBERNETES) -> list[str]:
    """The resource files of a kustomization's directory: every YAML file but
    the kustomization and its patches."""
    return sorted(
        name
        for name in os.listdir(directory)
        if name.endswith((".yaml", ".yml"))
        and name != "kustomization.yaml"
        and name not in patch_files(directory)
    )


def by_key(docs: list[dict[str, Any]]) -> Resources:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def manifests(directory: str = KUBERNETES) -> Resources:
    """Every resource in a directory's files (deploy/kubernetes by default),
    by (kind, name)."""
    out: Resources = {}
    for name in manifest_files(directory):
        out.update(by_key(documents(os.path.join(directory, name))))
    return out


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` over ``base`` as a strategic-merge patch does, for what the
    overlay's patch uses: maps merge key by key, lists of named items
    (containers, env) merge by name (the patch's first, as kustomize renders
    them), anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(i, dict) and "name" in i for i in base + patch):
        old = {item["name"]: item for item in base}
        new = {item["name"] for item in patch}
        return [
            strategic_merge(old[i["name"]], i) if i["name"] in old else i for i in patch
        ] + [item for item in base if item["name"] not in new]
    return patch


def kustomized(directory: str) -> Resources:
    """What ``kustomize build directory`` gives, for what these kustomizations
    use: ``resources`` (files, or directories with their own kustomization),
    then ``patches`` (strategic merge, the target named by the patch)."""
    spec = kustomization(directory)
    assert set(spec) <= {"apiVersion", "kind", "resources", "patches"}, spec
    out: Resources = {}
    for entry in spec["resources"]:
        path = os.path.normpath(os.path.join(directory, entry))
        found = kustomized(path) if os.path.isdir(path) else by_key(documents(path))
        assert not set(found) & set(out), f"{entry}: listed twice"
        out.update(found)
    for entry in spec.get("patches", []):
        assert set(entry) == {"path"}, entry
        (patch,) = documents(os.path.join(directory, entry["path"]))
        key = (patch["kind"], patch["metadata"]["name"])
        assert out[key]["apiVersion"] == patch["apiVersion"], key
        out[key] = strategic_merge(out[key], patch)
    return out


def kustomize_command(directory: str) -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", directory]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", directory]
    return None


def rendered(directory: str) -> Resources:
    """``directory`` rendered by kustomize (SkipTest without a binary)."""
    command = kustomize_command(directory)
    if command is None:
        raise SkipTest("no kustomize or kubectl binary to render with")
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    docs = [d for d in yaml.safe_load_all(output) if d is not None]
    resources = by_key(docs)
    assert len(resources) == len(docs), "a resource rendered twice"
    return resources


def overlay() -> Resources:
    """The shared-state overlay, rendered here (the base's resources, the
    overlay's, the patch applied)."""
    return kustomized(KUBERNETES_REDIS)


def validate(case: TestCase, key: tuple[str, str], doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            case.fail(f"{key} against {version}: {error}")


def pod_spec(
    resources: Mapping[tuple[str, str], dict[str, Any]], name: str = "mockai"
) -> dict[str, Any]:
    spec: dict[str, Any] = resources[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return selector.items() <= labels.items()


def service_links(
    resources: Mapping[tuple[str, str], dict[str, Any]],
) -> dict[str, str]:
    """The Docker-link variables the kubelet gives a pod for each Service of
    its namespace (unless ``enableServiceLinks: false``): ``NAME_SERVICE_HOST``,
    ``NAME_PORT_8082_TCP_ADDR``, ... (an address made up here)."""
    env: dict[str, str] = {}
    address = "10.96.0.10"
    for (kind, name), doc in resources.items():
        if kind != "Service" or doc["spec"].get("clusterIP") == "None":
            continue
        prefix = name.upper().replace("-", "_")
        ports = doc["spec"]["ports"]
        env[f"{prefix}_SERVICE_HOST"] = address
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for i, port in enumerate(ports):
            protocol = port.get("protocol", "TCP")
            url = f"{protocol.lower()}://{address}:{port['port']}"
            if "name" in port:
                port_name = port["name"].upper().replace("-", "_")
                env[f"{prefix}_SERVICE_PORT_{port_name}"] = str(port["port"])
            if i == 0:
                env[f"{prefix}_PORT"] = url
            each = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[each] = url
            env[f"{each}_PROTO"] = protocol.lower()
            env[f"{each}_PORT"] = str(port["port"])
            env[f"{each}_ADDR"] = address
    return env


def pod_config(resources: Mapping[tuple[str, str], dict[str, Any]]) -> Config:
    """The config a pod runs with: the ConfigMap's file, the Secret's
    variables and the Deployment's other env, as the kubelet would set them."""
    return parse_config(
        yaml.safe_load(config_map(resources)), pod_env(resources), source="configmap"
    )


def config_map(resources: Mapping[tuple[str, str], dict[str, Any]]) -> str:
    volumes = pod_spec(resources)["volumes"]
    (name,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    text: str = resources[("ConfigMap", name)]["data"]["config.yaml"]
    return text


def container(
    resources: Mapping[tuple[str, str], dict[str, Any]], name: str = "mockai"
) -> dict[str, Any]:
    (only,) = pod_spec(resources, name)["containers"]
    result: dict[str, Any] = only
    return result


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_env(resources: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    """The container's environment as the kubelet sets it: the Services'
    link variables (if on), under the Secret's keys, under ``env``."""
    env: dict[str, str] = {}
    if pod_spec(resources).get("enableServiceLinks", True):
        env.update(service_links(resources))
    spec = container(resources)
    for source in spec.get("envFrom", []):
        secret = resources[("Secret", source["secretRef"]["name"])]
        env.update({k: str(v) for k, v in secret["stringData"].items()})
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "resourceFieldRef" in var["valueFrom"]:
            field = var["valueFrom"]["resourceFieldRef"]
            kind, _, resource = field["resource"].partition(".")
            quantity = spec["resources"][kind][resource]
            divisor = cpus(str(field.get("divisor", "1")))
            env[var["name"]] = str(math.ceil(cpus(str(quantity)) / divisor))
        else:
            raise AssertionError(f"unexpected env source: {var}")
    return env


class KubernetesTests(TestCase):
    def test_every_manifest_matches_the_schemas(self) -> None:
        resources = manifests()
        self.assertEqual(
            sorted(kind for kind, _ in resources),
            sorted(
                [
                    "ConfigMap",
                    "Deployment",
                    "HorizontalPodAutoscaler",
                    "PodDisruptionBudget",
                    "Secret",
                    "Service",
                ]
            ),
        )
        for key, doc in resources.items():
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    self.fail(f"{key} against {version}: {error}")

    def test_the_validator_catches_a_typo(self) -> None:
        """strict=True: an unknown field fails (the check above is not empty)."""
        deployment = manifests()[("Deployment", "mockai")]
        broken = json.loads(json.dumps(deployment))
        spec = broken["spec"]["template"]["spec"]["containers"][0]
        spec["readinesProbe"] = spec.pop("readinessProbe")
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)

    def test_kustomization_lists_exactly_the_files(self) -> None:
        spec = kustomization(KUBERNETES)
        self.assertEqual(spec["kind"], "Kustomization")
        self.assertEqual(sorted(spec["resources"]), manifest_files())
        self.assertEqual(kustomized(KUBERNETES), manifests())
        # One source of truth: the old single-file manifest is gone.
        self.assertFalse(os.path.exists(os.path.join(DEPLOY, "kubernetes.yaml")))

    def test_kustomization_renders(self) -> None:
        resources = rendered(KUBERNETES)
        self.assertEqual(sorted(resources), sorted(manifests()))
        for key, doc in resources.items():
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
            except kubernetes_validate.ValidationError as error:
                self.fail(f"rendered {key}: {error}")

    def test_selectors_and_references_agree(self) -> None:
        resources = manifests()
        deployment = resources[("Deployment", "mockai")]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        self.assertLessEqual(selector.items(), labels.items())
        service = resources[("Service", "mockai")]
        self.assertLessEqual(service["spec"]["selector"].items(), labels.items())
        pdb = resources[("PodDisruptionBudget", "mockai")]
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], selector)
        hpa = resources[("HorizontalPodAutoscaler", "mockai")]
        self.assertEqual(
            hpa["spec"]["scaleTargetRef"],
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mockai"},
        )
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 3)
        (metric,) = hpa["spec"]["metrics"]
        self.assertEqual(metric["resource"]["name"], "cpu")
        # The HPA owns the replica count; a PDB that always lets one pod go.
        self.assertNotIn("replicas", deployment["spec"])
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        spec = container(resources)
        (port,) = spec["ports"]
        config = pod_config(resources)
        self.assertEqual(port["containerPort"], config.http.port)
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], port["name"])
        # Utilization is measured against the requests: they must be set.
        self.assertIn("cpu", spec["resources"]["requests"])
        self.assertIn("memory", spec["resources"]["limits"])

    def test_no_service_link_variables(self) -> None:
        """The kubelet's ``MOCKAI_SERVICE_HOST``, ``MOCKAI_PORT_8082_TCP``, ...
        (for the Service "mockai") would reach the config as settings; the pod
        turns them off."""
        resources = manifests()
        self.assertIs(pod_spec(resources).get("enableServiceLinks"), False)
        links = service_links(resources)
        self.assertIn("MOCKAI_SERVICE_HOST", links)
        self.assertFalse(set(links) & set(pod_env(resources)))

    def test_probes_and_shutdown(self) -> None:
        resources = manifests()
        spec = container(resources)
        pod = resources[("Deployment", "mockai")]["spec"]["template"]["spec"]
        self.assertEqual(spec["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(spec["livenessProbe"]["httpGet"]["path"], "/health")
        self.assertIn("httpGet", spec["startupProbe"])
        config = pod_config(resources)
        readiness = spec["readinessProbe"]
        # Endpoints notice a draining pod before it stops accepting: either the
        # config's ready grace covers the readiness probe, or a preStop waits.
        probe_s = readiness.get("periodSeconds", 10) * readiness.get(
            "failureThreshold", 3
        )
        pre_stop = spec.get("lifecycle", {}).get("preStop", {})
        pre_stop_s = pre_stop.get("sleep", {}).get("seconds", 0)
        self.assertGreaterEqual(config.shutdown.ready_grace_s + pre_stop_s, probe_s)
        self.assertGreater(
            pod["terminationGracePeriodSeconds"], pre_stop_s + stop_budget(config)
        )

    def test_hardening(self) -> None:
        resources = manifests()
        pod = resources[("Deployment", "mockai")]["spec"]["template"]["spec"]
        spec = container(resources)
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        self.assertIs(spec["securityContext"]["readOnlyRootFilesystem"], True)
        self.assertIs(spec["securityContext"]["allowPrivilegeEscalation"], False)
        self.assertEqual(spec["securityContext"]["capabilities"]["drop"], ["ALL"])
        self.assertIs(pod["automountServiceAccountToken"], False)
        # The image's user, numeric.
        (user,) = instruction("USER")
        self.assertEqual(str(pod["securityContext"]["runAsUser"]), user.split(":")[0])
        # Scraped where the server serves /metrics, on the container's port.
        template = resources[("Deployment", "mockai")]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")
        (port,) = [p["containerPort"] for p in spec["ports"]]
        self.assertEqual(annotations["prometheus.io/port"], str(port))

    def test_tokens_come_from_the_secret(self) -> None:
        resources = manifests()
        raw = yaml.safe_load(config_map(resources))

        def secret_keys(value: Any, path: str = "") -> list[str]:
            if not isinstance(value, dict):
                return []
            found = []
            for key, sub in value.items():
                name = f"{path}{key}"
                if is_secret(str(key)):
                    found.append(name)
                found += secret_keys(sub, name + ".")
            return found

        self.assertEqual(secret_keys(raw), [])
        with self.assertRaisesRegex(ConfigError, "access_token: required"):
            parse_config(raw, {}, source="configmap")
        (source,) = container(resources)["envFrom"]
        secret = resources[("Secret", source["secretRef"]["name"])]
        self.assertTrue(all(k.startswith("MOCKAI_") for k in secret["stringData"]))
        config = pod_config(resources)
        self.assertIn(secret["stringData"]["MOCKAI_ACCESS_TOKEN"], config.tokens)
        self.assertEqual(config.log.format, "json")
        self.assertEqual(config.workers, 1)

    async def test_the_pod_run_outside_a_cluster(self) -> None:
        """The image's command with the pod's config and env: the startup,
        liveness and readiness probes answer; after SIGTERM /ready says 503
        while /health stays 200, and it exits 0 within the grace period."""
        resources = manifests()
        spec = container(resources)
        pod = resources[("Deployment", "mockai")]["spec"]["template"]["spec"]
        config_path = os.path.abspath(self.mktemp() + ".yaml")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(config_map(resources))
        port = free_port()
        argv = [
            *image_command(config_path),
            *spec.get("args", []),
            f"--listen=tcp:{port}:interface=127.0.0.1",
        ]
        env = {**environ(), **image_env(), **pod_env(resources)}
        process = Process(self, argv, env)
        root = f"http://127.0.0.1:{port}"
        await process.until_up(root + spec["startupProbe"]["httpGet"]["path"])
        self.assertEqual(
            await process.get(root + spec["livenessProbe"]["httpGet"]["path"]), 200
        )
        ready = await process.get(root + spec["readinessProbe"]["httpGet"]["path"])
        self.assertIn(ready, (200, 404))
        await process.pool.closeCachedConnections()
        started = time.monotonic()
        process.transport.signalProcess("TERM")
        if ready == 200:
            await deferLater(reactor, 0.5)
            self.assertEqual(await process.get(root + "/ready"), 503)
            self.assertEqual(await process.get(root + "/health"), 200)
            await process.pool.closeCachedConnections()
        code = await process.protocol.ended
        took = time.monotonic() - started
        self.assertEqual(code, 0, (process.protocol.out + process.protocol.err)[-2000:])
        self.assertLess(took, pod["terminationGracePeriodSeconds"])
        self.assertNotIn(b"Traceback", process.protocol.out + process.protocol.err)
        if ready == 404:
            raise SkipTest(NO_READY)


# --- Kubernetes: the shared-state overlay ------------------------------------

REDIS = "mockai-redis"  # the overlay's Deployment


def server_options(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a redis-server (or valkey-server) command."""
    return {
        argv[i]: argv[i + 1]
        for i in range(1, len(argv) - 1)
        if argv[i].startswith("--")
    }


def same_server(server: str, cli: str, image: str) -> bool:
    """``valkey-server``, ``valkey-cli`` and ``valkey/valkey:8-alpine`` (or the
    redis ones): the probe's CLI is the image's own."""
    name = server.removesuffix("-server")
    image_name = image.rpartition("/")[2].partition(":")[0]
    return server != name and cli == f"{name}-cli" and image_name == name


class OverlayRedis(RedisServer):
    """A redis-server with the overlay's Redis options (its container's args
    but the program), on this test's loopback port and directory."""

    def _args(self) -> list[str]:
        options = container(overlay(), REDIS)["args"][1:]
        own = ["--port", str(self.port), "--bind", "127.0.0.1"]
        return [*options, *own, "--dir", self.directory, "--daemonize", "no"]


class KubernetesRedisTests(TestCase):
    """deploy/kubernetes-redis: the base, one Redis, the mockai pods on it."""

    def test_the_kustomization(self) -> None:
        spec = kustomization(KUBERNETES_REDIS)
        self.assertEqual(spec["kind"], "Kustomization")
        resources = spec["resources"]
        # The base by reference (its directory, unchanged) ...
        bases = [
            r for r in resources if os.path.isdir(os.path.join(KUBERNETES_REDIS, r))
        ]
        self.assertEqual(
            [os.path.normpath(os.path.join(KUBERNETES_REDIS, b)) for b in bases],
            [KUBERNETES],
        )
        # ... which must not contain the overlay: kustomize refuses that.
        self.assertNotEqual(
            os.path.commonpath([KUBERNETES, KUBERNETES_REDIS]), KUBERNETES
        )
        # ... then every other file here, as a resource or as a patch.
        own = sorted(set(resources) - set(bases))
        self.assertEqual(own, manifest_files(KUBERNETES_REDIS))
        self.assertEqual(len(patch_files(KUBERNETES_REDIS)), 1)
        self.assertEqual(
            sorted(
                n for n in os.listdir(KUBERNETES_REDIS) if n != "kustomization.yaml"
            ),
            sorted(own + patch_files(KUBERNETES_REDIS)),
        )
        # It adds to the base and replaces nothing.
        self.assertEqual(
            sorted(overlay()), sorted([*manifests(), *manifests(KUBERNETES_REDIS)])
        )

    def test_every_resource_matches_the_schemas(self) -> None:
        own = manifests(KUBERNETES_REDIS)
        self.assertEqual(
            sorted(kind for kind, _ in own), ["Deployment", "NetworkPolicy", "Service"]
        )
        # The overlay's own, and the base's as patched.
        for key, doc in overlay().items():
            validate(self, key, doc)

    def test_the_patch(self) -> None:
        """The mockai container, by name, gains MOCKAI_STATE__BACKEND=redis
        and a MOCKAI_STATE__URL naming the Redis Service and its port; the
        rest of its environment stays."""
        (name,) = patch_files(KUBERNETES_REDIS)
        (patch,) = documents(os.path.join(KUBERNETES_REDIS, name))
        base = manifests()
        key = (patch["kind"], patch["metadata"]["name"])
        self.assertEqual(key, ("Deployment", "mockai"))
        self.assertIn(key, base)
        (patched,) = patch["spec"]["template"]["spec"]["containers"]
        self.assertEqual(patched["name"], container(base)["name"])
        self.assertEqual(sorted(patched), ["env", "name"])
        env = {v["name"]: v["value"] for v in patched["env"]}
        self.assertEqual(env["MOCKAI_STATE__BACKEND"], "redis")
        url = parse_url(env["MOCKAI_STATE__URL"])
        self.assertEqual(url.scheme, "redis")
        service = manifests(KUBERNETES_REDIS)[("Service", url.host)]
        self.assertEqual([p["port"] for p in service["spec"]["ports"]], [url.port])

        resources = overlay()
        merged = container(resources)
        self.assertEqual(merged["envFrom"], container(base)["envFrom"])
        self.assertLessEqual(
            {v["name"] for v in container(base)["env"]},
            {v["name"] for v in merged["env"]},
        )
        config = pod_config(resources)
        self.assertEqual(config.state.backend, "redis")
        self.assertEqual(config.state.url, env["MOCKAI_STATE__URL"])
        self.assertEqual(config.workers, pod_config(base).workers)
        # A pod started before Redis is up waits for it within its startup
        # probe's time (and is restarted if it is not there by then).
        startup = merged["startupProbe"]
        self.assertLess(
            config.state.connect_timeout_s,
            startup["periodSeconds"] * startup["failureThreshold"],
        )

    def test_no_service_link_variables(self) -> None:
        """MOCKAI_REDIS_SERVICE_HOST and the like (for the Service
        "mockai-redis") would reach the config as settings: off, in the
        patched pod too."""
        resources = overlay()
        self.assertIn("MOCKAI_REDIS_SERVICE_HOST", service_links(resources))
        for name in ("mockai", REDIS):
            self.assertIs(pod_spec(resources, name).get("enableServiceLinks"), False)

    def test_the_service_and_the_network_policy(self) -> None:
        """The Redis Service selects the Redis pod and only it; the mockai
        Service and PodDisruptionBudget do not select it; the NetworkPolicy
        lets the mockai pods, and nothing else, reach its port."""
        resources = overlay()
        deployment = resources[("Deployment", REDIS)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(deployment["spec"]["selector"]["matchLabels"], labels))
        mockai = resources[("Deployment", "mockai")]["spec"]["template"]["metadata"]
        url = parse_url(pod_env(resources)["MOCKAI_STATE__URL"])
        service = resources[("Service", url.host)]
        self.assertTrue(selects(service["spec"]["selector"], labels))
        self.assertFalse(selects(service["spec"]["selector"], mockai["labels"]))
        self.assertFalse(
            selects(resources[("Service", "mockai")]["spec"]["selector"], labels)
        )
        pdb = resources[("PodDisruptionBudget", "mockai")]
        self.assertFalse(selects(pdb["spec"]["selector"]["matchLabels"], labels))
        (port,) = service["spec"]["ports"]
        (listens,) = container(resources, REDIS)["ports"]
        self.assertEqual(port["targetPort"], listens["name"])
        # The server's port: the default one, as its args set none.
        self.assertNotIn("--port", server_options(container(resources, REDIS)["args"]))
        self.assertEqual(listens["containerPort"], 6379)

        (policy,) = [d for (kind, _), d in resources.items() if kind == "NetworkPolicy"]
        self.assertTrue(selects(policy["spec"]["podSelector"]["matchLabels"], labels))
        self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
        (rule,) = policy["spec"]["ingress"]
        (source,) = rule["from"]
        self.assertEqual(sorted(source), ["podSelector"])
        self.assertTrue(selects(source["podSelector"]["matchLabels"], mockai["labels"]))
        (allowed,) = rule["ports"]
        self.assertIn(allowed["port"], (listens["name"], listens["containerPort"]))

    def test_the_redis_pod(self) -> None:
        resources = overlay()
        deployment = resources[("Deployment", REDIS)]
        pod = pod_spec(resources, REDIS)
        spec = container(resources, REDIS)
        # One, replaced rather than surged: two would be two separate states.
        self.assertEqual(deployment["spec"]["replicas"], 1)
        self.assertEqual(deployment["spec"]["strategy"], {"type": "Recreate"})
        # In memory only.
        options = server_options(spec["args"])
        self.assertEqual(options["--save"], "")
        self.assertEqual(options["--appendonly"], "no")
        # Through the image's entrypoint (no command: it turns protected mode
        # off, or other pods could not connect).
        self.assertNotIn("command", spec)
        # Ready (and alive) while it answers PING, with the image's own CLI.
        for probe in ("readinessProbe", "livenessProbe"):
            command = spec[probe]["exec"]["command"]
            self.assertEqual(command[1:], ["ping"])
            self.assertTrue(same_server(spec["args"][0], command[0], spec["image"]))
        # Hardened as the mockai pod is.
        self.assertIs(pod["automountServiceAccountToken"], False)
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        self.assertGreater(pod["securityContext"]["runAsUser"], 0)
        self.assertEqual(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault"
        )
        self.assertIs(spec["securityContext"]["readOnlyRootFilesystem"], True)
        self.assertIs(spec["securityContext"]["allowPrivilegeEscalation"], False)
        self.assertEqual(spec["securityContext"]["capabilities"]["drop"], ["ALL"])
        for kind in ("requests", "limits"):
            self.assertLessEqual({"cpu", "memory"}, spec["resources"][kind].keys())
        # Its working directory (/data) is writable, on an emptyDir.
        (mount,) = spec["volumeMounts"]
        self.assertEqual(mount["mountPath"], "/data")
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertIn("emptyDir", volumes[mount["name"]])

    def test_the_overlay_renders(self) -> None:
        """kustomize renders what these tests read (the same merge)."""
        resources = rendered(KUBERNETES_REDIS)
        self.assertEqual(resources, overlay())
        for key, doc in resources.items():
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
            except kubernetes_validate.ValidationError as error:
                self.fail(f"rendered {key}: {error}")

    async def test_the_pod_on_a_real_redis(self) -> None:
        """The overlay's pod, run as the image's command, and a redis-server
        with the Redis container's options: the pod started while Redis is
        still away waits for it, then serves with the shared state connected
        (probes answered), and exits 0 on SIGTERM."""
        redis = await OverlayRedis.start(self)
        await redis.kill()
        resources = overlay()
        spec = container(resources)
        config_path = os.path.abspath(self.mktemp() + ".yaml")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(config_map(resources))
        port = free_port()
        argv = [
            *image_command(config_path),
            *spec.get("args", []),
            f"--listen=tcp:{port}:interface=127.0.0.1",
        ]
        env = {**environ(), **image_env(), **pod_env(resources)}
        # The Service's name, here: the loopback port of this redis-server.
        env["MOCKAI_STATE__URL"] = redis.url
        process = Process(self, argv, env)
        await deferLater(reactor, 1.0)
        await redis.start_again()
        root = f"http://127.0.0.1:{port}"
        await process.until_up(root + spec["startupProbe"]["httpGet"]["path"])
        response = await treq.get(root + "/health", pool=process.pool)
        health = json.loads(await treq.content(response))
        self.assertEqual(
            health["state"], {"backend": "redis", "connected": True, "url": redis.url}
        )
        ready = spec["readinessProbe"]["httpGet"]["path"]
        self.assertEqual(await process.get(root + ready), 200)
        code, took = await process.stop("SIGTERM")
        output = process.protocol.out + process.protocol.err
        self.assertEqual(code, 0, output[-2000:])
        self.assertLess(took, pod_spec(resources)["terminationGracePeriodSeconds"])
        self.assertNotIn(b"Traceback", output)


# --- Docker Swarm and systemd ---------------------------------------------------


def stack() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(read(STACK))
    return loaded


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A stack service's ``environment`` (a map or a list of KEY=value)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(e.split("=", 1) for e in environment)
    return {str(k): str(v) for k, v in environment.items()}


def stack_config(service: Mapping[str, Any]) -> Config:
    """The config a task of ``service`` runs with: its Swarm config's file
    and its environment."""
    (mount,) = service["configs"]
    assert mount["target"] == "/app/config.yaml", mount
    path = stack()["configs"][mount["source"]]["file"]
    return load_config(os.path.join(os.path.dirname(STACK), path), service_env(service))


class StackTests(TestCase):
    def test_the_original_service(self) -> None:
        service = stack()["services"]["mock-openai-api"]
        deploy = service["deploy"]
        self.assertEqual(deploy["replicas"], 3)
        update = deploy["update_config"]
        self.assertEqual(update["parallelism"], 2)
        self.assertIn(update["order"], ("start-first", "stop-first"))
        self.assertIn(update["failure_action"], ("rollback", "pause"))
        test = service["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD")
        self.assertEqual(test[1], "curl")
        self.assertIn("http://localhost:8082/health", test)
        config = stack_config(service)
        self.assertEqual([p["target"] for p in service["ports"]], [config.http.port])
        self.assertGreater(seconds(service["stop_grace_period"]), stop_budget(config))

    def test_shared_state(self) -> None:
        """The 3 replicas share the stack's Redis: the mockai service names
        it (by its service name, on its port), and it is the same server, run
        the same way, as the Kubernetes overlay's."""
        services = stack()["services"]
        service = services["mock-openai-api"]
        env = service_env(service)
        self.assertEqual(env["MOCKAI_STATE__BACKEND"], "redis")
        url = parse_url(env["MOCKAI_STATE__URL"])
        self.assertEqual(url.scheme, "redis")
        self.assertIn(url.host, services)
        redis = services[url.host]
        command = redis["command"]
        self.assertNotIn("--port", server_options(command))
        self.assertEqual(url.port, 6379)
        self.assertNotIn("ports", redis)  # the stack's network only
        options = server_options(command)
        self.assertEqual(options["--save"], "")
        self.assertEqual(options["--appendonly"], "no")
        test = redis["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD")
        self.assertEqual(test[2:], ["ping"])
        self.assertTrue(same_server(command[0], test[1], redis["image"]))
        self.assertEqual(redis["deploy"]["replicas"], 1)
        kubernetes = container(overlay(), REDIS)
        self.assertEqual(
            (command, redis["image"]), (kubernetes["args"], kubernetes["image"])
        )

        config = stack_config(service)
        self.assertEqual(config.state.backend, "redis")
        self.assertEqual(config.state.url, env["MOCKAI_STATE__URL"])
        # A stack starts its services in no order: a task waits for Redis
        # for less than its health check allows before calling it unhealthy
        # ...
        health = service["healthcheck"]
        allowed = (
            seconds(health["start_period"])
            + seconds(health["interval"]) * (health["retries"])
        )
        self.assertLess(config.state.connect_timeout_s, allowed)
        # ... and one that gave up ("mockai cannot start", exit status 0)
        # comes back all the same.
        self.assertEqual(service["deploy"]["restart_policy"]["condition"], "any")


class SystemdTests(TestCase):
    def test_the_unit(self) -> None:
        path = os.path.join(DEPLOY, "systemd", "mockai.service")
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        with open(path, encoding="utf-8") as f:
            unit.read_file(f)
        service = unit["Service"]
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(service["KillSignal"], "SIGTERM")
        argv = shlex.split(service["ExecStart"])
        self.assertTrue(argv[0].endswith("/bin/twistd"), argv)
        self.assertEqual(
            argv[1:], ["-n", "--pidfile=", "mockai", "--config=/etc/mockai/config.yaml"]
        )
        # deploy/README.md installs the repository's config.yaml there.
        config = load_config(os.path.join(ROOT, "config.yaml"), {})
        self.assertGreater(seconds(service["TimeoutStopSec"]), stop_budget(config))
        self.assertEqual(unit["Install"]["WantedBy"], "multi-user.target")
        self.assertFalse(os.path.exists(os.path.join(DEPLOY, "mockai.service")))

    def test_shared_state_commented(self) -> None:
        """The commented lines for a Redis on the host: uncommented, they are
        a config the daemon takes, after redis-server.service."""
        text = read(os.path.join(DEPLOY, "systemd", "mockai.service"))
        env = dict(re.findall(r"(?m)^#Environment=(MOCKAI_STATE__\w+)=(\S+)$", text))
        self.assertEqual(env["MOCKAI_STATE__BACKEND"], "redis")
        config = load_config(os.path.join(ROOT, "config.yaml"), env)
        self.assertEqual(config.state.backend, "redis")
        self.assertEqual(parse_url(config.state.url).host, "127.0.0.1")
        self.assertRegex(text, r"(?m)^#Wants=redis-server\.service$")
        self.assertRegex(text, r"(?m)^#After=redis-server\.service$")

    def test_durations(self) -> None:
        self.assertEqual(seconds("45s"), 45)
        self.assertEqual(seconds("1m30s"), 90)
        self.assertEqual(seconds("500ms"), 0.5)
        self.assertEqual(seconds(45), 45)
        self.assertEqual(seconds("45"), 45)

"""deploy/ and the Dockerfile: manifests valid offline, and their facts hold.

The Kubernetes manifests are checked against the Kubernetes JSON schemas that
``kubernetes-validate`` ships (no cluster, no network); the kustomization is
rendered when a ``kustomize`` or ``kubectl`` binary is at hand. The Dockerfile's
entrypoint and the Deployment's pod are run as processes, outside a container.
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
from tests.test_daemon import TWISTD, Twistd, environ

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
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
        self.assertTrue(any("[exact,tls]" in run for run in instruction("RUN")))
        self.assertEqual(image_env().get("MOCKAI_WORKERS"), "1")
        # The variable is a real setting, and so is its override.
        for value in ("1", "4"):
            config = parse_config(
                {"access_token": "sk-x"}, {"MOCKAI_WORKERS": value}, source="-"
            )
            self.assertEqual(config.workers, int(value))

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


def manifest_files() -> list[str]:
    return sorted(
        name
        for name in os.listdir(KUBERNETES)
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml"
    )


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource in deploy/kubernetes, by (kind, name)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in manifest_files():
        for doc in documents(os.path.join(KUBERNETES, name)):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", KUBERNETES]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", KUBERNETES]
    return None


def pod_config(resources: Mapping[tuple[str, str], dict[str, Any]]) -> Config:
    """The config a pod runs with: the ConfigMap's file, the Secret's
    variables and the Deployment's other env, as the kubelet would set them."""
    return parse_config(
        yaml.safe_load(config_map(resources)), pod_env(resources), source="configmap"
    )


def config_map(resources: Mapping[tuple[str, str], dict[str, Any]]) -> str:
    volumes = resources[("Deployment", "mockai")]["spec"]["template"]["spec"]["volumes"]
    (name,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    text: str = resources[("ConfigMap", name)]["data"]["config.yaml"]
    return text


def container(resources: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    pod = resources[("Deployment", "mockai")]["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    result: dict[str, Any] = only
    return result


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_env(resources: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
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
        (kustomization,) = documents(os.path.join(KUBERNETES, "kustomization.yaml"))
        self.assertEqual(kustomization["kind"], "Kustomization")
        self.assertEqual(sorted(kustomization["resources"]), manifest_files())
        # One source of truth: the old single-file manifest is gone.
        self.assertFalse(os.path.exists(os.path.join(DEPLOY, "kubernetes.yaml")))

    def test_kustomization_renders(self) -> None:
        command = kustomize_command()
        if command is None:
            raise SkipTest("no kustomize or kubectl binary to render with")
        rendered = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=60
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d is not None]
        by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        self.assertEqual(sorted(by_key), sorted(manifests()))
        for key, doc in by_key.items():
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


# --- Docker Swarm and systemd ---------------------------------------------------


class StackTests(TestCase):
    def test_the_original_service(self) -> None:
        path = os.path.join(DEPLOY, "docker-stack.yml")
        stack = yaml.safe_load(read(path))
        service = stack["services"]["mock-openai-api"]
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
        (mount,) = service["configs"]
        self.assertEqual(mount["target"], "/app/config.yaml")
        config_file = os.path.join(
            os.path.dirname(path), stack["configs"][mount["source"]]["file"]
        )
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) for e in environment)
        config = load_config(
            config_file, {str(k): str(v) for k, v in environment.items()}
        )
        self.assertEqual([p["target"] for p in service["ports"]], [config.http.port])
        self.assertGreater(seconds(service["stop_grace_period"]), stop_budget(config))


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

    def test_durations(self) -> None:
        self.assertEqual(seconds("45s"), 45)
        self.assertEqual(seconds("1m30s"), 90)
        self.assertEqual(seconds("500ms"), 0.5)
        self.assertEqual(seconds(45), 45)
        self.assertEqual(seconds("45"), 45)

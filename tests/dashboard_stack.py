"""What the dashboard watches, for real: a `modelzoo-server` (the zoo's `emotion`, with
batching), the operator reconciling one ModelZoo on a test cluster, and Prometheus
scraping both. Shared by tests/e2e/test_dashboard.py and tests/dashboard_picture.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.operator_process import run_operator
from tests.prometheus_process import Prometheus, run_prometheus, static_jobs
from tests.servers import free_port, run_server

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "modelzoo.yaml"
MODEL = "emotion"  # small (64×64 grey input) and batchable: cheap on a busy machine
ZOO = "dash"
MAX_INFLIGHT = 8
# Grafana's $__rate_interval is at least four scrape intervals (1 s here).
RATE_INTERVAL = "15s"


@dataclass(frozen=True)
class Stack:
    server_url: str
    prometheus: Prometheus


def variables(model: str = MODEL) -> dict[str, str]:
    """The dashboard's variables: every namespace (`.*` also matches series with no
    namespace label, as a static scrape config leaves them) and one model."""
    return {"namespace": ".*", "model": model, "__rate_interval": RATE_INTERVAL}


def zoo_manifest(replicas: int) -> dict:
    model = {
        "name": MODEL,
        "zoo": MODEL,
        "replicas": replicas,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": ZOO},
        "spec": {"models": [model]},
    }


def apply_zoo(cluster, namespace: str, replicas: int) -> None:
    manifest = json.dumps(zoo_manifest(replicas))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


@contextlib.contextmanager
def observed(cluster, namespace: str, zoo_dir: Path, workdir: Path) -> Iterator[Stack]:
    """Everything started, the zoo Ready (the simulated nodes run its pods), Prometheus
    scraping the server and the operator; all stopped on exit."""
    cluster.kubectl("apply", "-f", str(CRD))
    metrics_port = free_port()
    operator_env = {
        "MODELZOO_OPERATOR_NAMESPACES": namespace,
        "MODELZOO_OPERATOR_METRICS_PORT": str(metrics_port),
        # The e2e session's operator (tests/e2e/operators.py), if one runs, reconciles this
        # zoo too: with the same images both write the same children, so they never fight.
        "MODELZOO_OPERATOR_IMAGE": "registry.invalid/modelzoo:e2e",
        "MODELZOO_OPERATOR_GPU_IMAGE": "registry.invalid/modelzoo:e2e-gpu",
        # Frequent drift passes keep reconcile series moving within a rate window.
        "MODELZOO_OPERATOR_DRIFT_INTERVAL": "5",
    }
    (workdir / "operator").mkdir(parents=True, exist_ok=True)
    server_args = [
        "--zoo", MODEL, "--model-dir", str(zoo_dir),
        "--max-batch-size", "8", "--max-delay-ms", "5", "--max-inflight", str(MAX_INFLIGHT),
        "--runtime", "tensorflow",  # batching (the dashboard's panels): TensorFlow only
    ]  # fmt: skip
    with (
        run_operator(cluster.kubeconfig, workdir / "operator", operator_env),
        run_server(server_args, workdir / "server.log") as server,
    ):
        apply_zoo(cluster, namespace, replicas=1)
        cluster.kubectl(
            "wait", f"modelzoo/{ZOO}", "-n", namespace, "--for=condition=Ready",
            "--timeout=180s", timeout=240,
        )  # fmt: skip
        targets = {
            "modelzoo-server": server.url.removeprefix("http://"),
            "modelzoo-operator": f"127.0.0.1:{metrics_port}",
        }
        with run_prometheus(static_jobs(targets), workdir / "prometheus") as prometheus:
            yield Stack(server.url, prometheus)

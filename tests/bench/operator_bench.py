"""The operator on the cluster harness: `kubectl apply` → Ready, one zoo and hundreds at once.

A real control plane (tests/cluster), the CRD, and the operator as a local
process (standalone, admin credentials: RBAC is the e2e tests' business). Each
zoo holds one small CPU model, so the simulated nodes can place hundreds of them.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import harness
from tests.operator_process import run_operator

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "modelzoo.dev", "v1alpha1", "modelzoos"
NAMESPACE = "bench"


@dataclass
class OperatorFigures:
    single_runs: int
    single_p50_s: float
    single_max_s: float
    mass_zoos: int
    mass_all_ready_s: float
    operator_peak_rss_mib: float


def _zoo(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelZoo",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "models": [
                {
                    "name": "classify",
                    "zoo": "mobilenet",
                    "replicas": 1,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ]
        },
    }


def _ready(zoo: dict) -> bool:
    for condition in zoo.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(single_runs: int, mass_zoos: int, say=print) -> OperatorFigures:
    from kubernetes import client, config

    with (
        tempfile.TemporaryDirectory(prefix="modelzoo-bench-op-") as tmp,
        harness.session() as cluster,
    ):
        workdir = Path(tmp)
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "modelzoo.yaml"))
        cluster.kubectl("create", "namespace", NAMESPACE)
        with run_operator(
            cluster.kubeconfig,
            workdir,
            {"MODELZOO_OPERATOR_IMAGE": "registry.invalid/modelzoo:bench"},
        ) as operator:
            api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))

            def get(name: str) -> dict:
                return api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)

            single: list[float] = []
            for index in range(single_runs):
                name = f"one-{index}"
                started = time.perf_counter()
                api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _zoo(name))
                while not _ready(get(name)):
                    if time.perf_counter() - started > 120:
                        raise TimeoutError(f"zoo {name} not Ready in 120 s")
                    time.sleep(0.05)
                single.append(time.perf_counter() - started)
                say(f"operator: apply → Ready #{index + 1}/{single_runs}: {single[-1]:.2f} s")

            started = time.perf_counter()
            for index in range(mass_zoos):
                api.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, _zoo(f"many-{index}")
                )
            while True:
                zoos = api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
                ready = sum(_ready(z) for z in zoos if z["metadata"]["name"].startswith("many-"))
                elapsed = time.perf_counter() - started
                if ready == mass_zoos:
                    break
                if elapsed > 600:
                    raise TimeoutError(f"{ready}/{mass_zoos} zoos Ready after 600 s")
                say(f"operator: {ready}/{mass_zoos} zoos Ready after {elapsed:.0f} s")
                time.sleep(1.0)
            peak = _peak_rss_mib(operator.pid)
    return OperatorFigures(
        single_runs=single_runs,
        single_p50_s=statistics.median(single),
        single_max_s=max(single),
        mass_zoos=mass_zoos,
        mass_all_ready_s=elapsed,
        operator_peak_rss_mib=peak,
    )


if __name__ == "__main__":
    print(
        measure(
            int(sys.argv[1]) if len(sys.argv) > 1 else 20,
            int(sys.argv[2]) if len(sys.argv) > 2 else 200,
        )
    )

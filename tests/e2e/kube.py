"""Reading and writing a test cluster through its `kubectl` (a harness.Cluster), and
waiting on it: bounded polls and `kubectl wait`, which fail with what the namespace
holds."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tests.cluster import harness

WAIT = 180  # seconds, for kubectl waits on a busy 2-core machine
GPU_NODES = {n for n, (cap, _, _) in harness.NODES.items() if harness.GPU_RESOURCE in cap}
CPU_NODES = set(harness.NODES) - GPU_NODES

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 120.0, what: str = "") -> T:
    """Poll `check` (which reads the cluster) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, KeyError, IndexError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


def get_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster, namespace: str, obj: dict, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=check)


def zoo_manifest(name: str, *models: dict) -> dict:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": name},
        "spec": {"models": list(models)},
    }


def names(cluster, kind: str, namespace: str, zoo: str) -> set[str]:
    """The names of a zoo's children of one kind (by the operator's zoo label)."""
    items = get_json(cluster, kind, "-n", namespace, "-l", f"modelzoo.dev/zoo={zoo}")["items"]
    return {i["metadata"]["name"] for i in items}


def can_i(cluster, subject: str, *args: str) -> bool:
    """`kubectl auth can-i --as SUBJECT ARGS`: whether RBAC lets the subject do it."""
    result = cluster.kubectl("auth", "can-i", "--as", subject, *args, check=False)
    return result.stdout.strip() == "yes"


def namespace_state(cluster, namespace: str) -> str:
    """What a failed wait needs to be understood: the namespace's objects and events."""
    state = cluster.kubectl(
        "get", "modelzoos,deployments,replicasets,pods,pvc,events", "-n", namespace,
        "-o", "wide", check=False,
    )  # fmt: skip
    return f"{state.stdout}{state.stderr}"


def kubectl_wait(
    cluster,
    namespace: str,
    condition: str,
    *targets: str,
    timeout: int = WAIT,
    explain: Callable[[], str] | None = None,
) -> None:
    """`kubectl wait --for=CONDITION TARGETS`; on a timeout the test fails with what
    `explain` says (by default the namespace's state)."""
    result = cluster.kubectl(
        "wait", *targets, "-n", namespace, f"--for={condition}", f"--timeout={timeout}s",
        timeout=timeout + 60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        details = explain() if explain else namespace_state(cluster, namespace)
        pytest.fail(f"{' '.join(targets)} {condition}: {result.stderr}\n{details}")


def wait_for_zoo(
    cluster,
    namespace: str,
    zoo: str,
    condition: str = "Ready",
    timeout: int = WAIT,
    explain: Callable[[], str] | None = None,
) -> dict:
    """Wait for a condition of a zoo, then return the zoo (its status in the failure)."""

    def details() -> str:
        status = get_json(cluster, "modelzoo", zoo, "-n", namespace).get("status")
        return f"status: {status}\n" + (
            explain() if explain else namespace_state(cluster, namespace)
        )

    kubectl_wait(
        cluster, namespace, f"condition={condition}", f"modelzoo/{zoo}", timeout=timeout,
        explain=details,
    )  # fmt: skip
    return get_json(cluster, "modelzoo", zoo, "-n", namespace)

"""The e2e control plane itself: real kube-apiserver/scheduler/controller-manager,
etcd, kwok-simulated CPU and GPU nodes, helm, RBAC; and the harness' cache and
teardown promises."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster import harness
from tests.e2e.kube import CPU_NODES, GPU_NODES, apply, eventually, get_json

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TINY_CHART = ROOT / "tests" / "cluster" / "testdata" / "tiny-chart"
WAIT = "240s"  # a busy 2-core machine


def deployment(name: str, *, replicas: int = 1, gpu: int = 0, tolerate_gpu: bool = False) -> dict:
    container = {
        "name": "main",
        "image": "registry.invalid/modelzoo-test:0",  # never pulled: kwok simulates the pod
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    if gpu:
        container["resources"]["limits"] = {harness.GPU_RESOURCE: str(gpu)}
    spec = {"containers": [container]}
    if tolerate_gpu:
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def pods_of(cluster, ns: str, app: str) -> list[dict]:
    return get_json(cluster, "pods", "-n", ns, "-l", f"app={app}")["items"]


def test_kubectl_version_reports_the_pinned_release(cluster):
    pinned = harness.read_versions()["K8S_VERSION"]
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == pinned
    assert out["clientVersion"]["gitVersion"] == pinned
    assert cluster.helm("version", "--short").stdout.startswith(
        harness.read_versions()["HELM_VERSION"]
    )


def test_nodes_are_ready_with_cpu_and_gpu_capacity(cluster):
    nodes = {n["metadata"]["name"]: n for n in get_json(cluster, "nodes")["items"]}
    assert set(nodes) == set(harness.NODES)
    for name, node in nodes.items():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", name
        assert node["status"]["allocatable"]["cpu"] == "8"
        assert node["status"]["allocatable"]["memory"] == "32Gi"
    for name in GPU_NODES:
        status, meta = nodes[name]["status"], nodes[name]["metadata"]
        assert status["capacity"][harness.GPU_RESOURCE] == "4"
        assert status["allocatable"][harness.GPU_RESOURCE] == "4"
        assert meta["labels"][harness.GPU_LABEL] == "true"
        assert harness.GPU_TAINT in [
            {k: t[k] for k in ("key", "value", "effect")} for t in nodes[name]["spec"]["taints"]
        ]
    for name in CPU_NODES:
        assert harness.GPU_RESOURCE not in nodes[name]["status"]["capacity"]
        assert not nodes[name]["spec"].get("taints")


def test_gpu_deployment_with_toleration_runs_on_a_gpu_node(cluster, namespace):
    apply(cluster, namespace, deployment("gpu-ok", gpu=1, tolerate_gpu=True))
    cluster.kubectl(
        "rollout", "status", "deployment/gpu-ok", "-n", namespace, f"--timeout={WAIT}", timeout=300
    )
    (pod,) = pods_of(cluster, namespace, "gpu-ok")
    assert pod["spec"]["nodeName"] in GPU_NODES
    assert pod["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"


def test_gpu_deployment_without_toleration_stays_pending(cluster, namespace):
    apply(cluster, namespace, deployment("gpu-no-tol", gpu=1))
    pod = eventually(
        lambda: (pods_of(cluster, namespace, "gpu-no-tol") or [None])[0],
        timeout=240,
        what="the pod",
    )
    name = pod["metadata"]["name"]

    def failed_scheduling():
        events = get_json(
            cluster,
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason=FailedScheduling",
        )["items"]
        return events

    events = eventually(failed_scheduling, timeout=240, what="a FailedScheduling event")
    message = events[0]["message"]
    assert "2 Insufficient nvidia.com/gpu" in message, message  # the CPU nodes
    assert "2 node(s) had untolerated taint" in message, message  # the GPU nodes
    # Still pending a while later, never bound to a node.
    time.sleep(5)
    (pod,) = pods_of(cluster, namespace, "gpu-no-tol")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_cpu_deployment_never_lands_on_a_gpu_node(cluster, namespace):
    apply(cluster, namespace, deployment("cpu-only", replicas=6))
    cluster.kubectl(
        "rollout",
        "status",
        "deployment/cpu-only",
        "-n",
        namespace,
        f"--timeout={WAIT}",
        timeout=300,
    )
    pods = pods_of(cluster, namespace, "cpu-only")
    assert len(pods) == 6
    assert {p["spec"]["nodeName"] for p in pods} <= CPU_NODES


def test_deleting_a_deployment_garbage_collects_replicaset_and_pods(cluster, namespace):
    apply(cluster, namespace, deployment("gc", replicas=2))
    cluster.kubectl(
        "rollout", "status", "deployment/gc", "-n", namespace, f"--timeout={WAIT}", timeout=300
    )
    assert get_json(cluster, "replicasets", "-n", namespace, "-l", "app=gc")["items"]
    assert len(pods_of(cluster, namespace, "gc")) == 2
    cluster.kubectl("delete", "deployment", "gc", "-n", namespace, "--wait=false")

    def all_gone():
        rs = get_json(cluster, "replicasets", "-n", namespace, "-l", "app=gc")["items"]
        return not rs and not pods_of(cluster, namespace, "gc")

    eventually(all_gone, timeout=240, what="the ReplicaSet and Pods to be garbage-collected")


def test_helm_install_and_uninstall_a_tiny_chart(cluster, namespace):
    cluster.helm("lint", TINY_CHART)
    cluster.helm(
        "install", "tiny", TINY_CHART, "-n", namespace, "--wait", "--timeout", "4m", timeout=360
    )
    releases = json.loads(cluster.helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]
    cm = get_json(cluster, "configmap", "tiny-config", "-n", namespace)
    assert cm["data"]["message"] == "hello from the tiny chart"
    assert (
        get_json(cluster, "deployment", "tiny-web", "-n", namespace)["status"]["readyReplicas"] == 1
    )

    cluster.helm("uninstall", "tiny", "-n", namespace, "--wait", "--timeout", "4m", timeout=360)
    assert json.loads(cluster.helm("list", "-n", namespace, "-o", "json").stdout) == []
    gone = cluster.kubectl("get", "configmap", "tiny-config", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    eventually(
        lambda: not get_json(cluster, "deployments", "-n", namespace)["items"],
        timeout=240,
        what="the chart's Deployment to go",
    )


def test_rbac_is_enforced_for_a_narrow_service_account(cluster, namespace, tmp_path):
    ns = namespace
    cluster.kubectl("create", "serviceaccount", "narrow", "-n", ns)
    cluster.kubectl("create", "role", "pod-reader", "-n", ns, "--verb=get,list", "--resource=pods")
    cluster.kubectl(
        "create", "rolebinding", "narrow-reads-pods", "-n", ns,
        "--role=pod-reader", f"--serviceaccount={ns}:narrow",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", "narrow", "-n", ns).stdout.strip()

    # A kubeconfig with only the token (no admin client certificate).
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    kubeconfig = tmp_path / "narrow.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server}],
                "users": [{"name": "narrow", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "narrow"}}],
                "current-context": "c",
            }
        )
    )

    def as_narrow(*args):
        return cluster.run(
            cluster.bin / "kubectl", "--kubeconfig", kubeconfig, *args, check=False, timeout=60
        )

    who = as_narrow("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == f"system:serviceaccount:{ns}:narrow", who.stderr
    # Allowed by the Role:
    assert as_narrow("get", "pods", "-n", ns).returncode == 0
    # Not allowed: other verbs, other resources, other namespaces, cluster scope.
    for args in (
        ("get", "secrets", "-n", ns),
        ("create", "configmap", "x", "-n", ns, "--from-literal=a=b"),
        ("delete", "pod", "any-pod", "-n", ns),
        ("get", "pods", "-n", "default"),
        ("get", "nodes"),
    ):
        res = as_narrow(*args)
        assert res.returncode != 0, args
        assert "forbidden" in res.stderr.lower(), (args, res.stderr)
    assert as_narrow("auth", "can-i", "list", "pods", "-n", ns).stdout.strip() == "yes"
    assert as_narrow("auth", "can-i", "list", "secrets", "-n", ns).stdout.strip() == "no"
    # The admin still may (the refusals above come from RBAC, not a broken server).
    assert cluster.kubectl("get", "secrets", "-n", ns).returncode == 0


def test_control_plane_listens_on_loopback_only(cluster):
    listening = cluster.listening()
    assert listening, "found no listening socket of the cluster's processes"
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening
    assert len(cluster.pids()) >= 5  # etcd, apiserver, controller-manager, scheduler, kwok


def test_second_build_is_cached(cluster):
    """A second `make test` on the same machine rebuilds nothing."""
    stamp = cluster.bin.parent / "stamp"
    before = {p.name: p.stat().st_mtime_ns for p in cluster.bin.iterdir()}
    stamp_before = stamp.stat().st_mtime_ns
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", str(harness.BUILD_SH)], capture_output=True, text=True, check=True, timeout=120
    )
    assert "cached" in out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]) == cluster.bin
    assert time.monotonic() - t0 < 60
    assert {p.name: p.stat().st_mtime_ns for p in cluster.bin.iterdir()} == before
    assert stamp.stat().st_mtime_ns == stamp_before
    assert harness.bin_dir() == cluster.bin


def test_teardown_leaves_nothing_behind_even_when_the_body_fails(cluster, tmp_path):
    """A second, throwaway cluster: an exception inside the session still tears
    it down, with no process, no port and no directory left."""
    workdir = tmp_path / "throwaway"
    seen = {}
    with (
        pytest.raises(RuntimeError, match="test failure"),
        harness.session(workdir, bin=cluster.bin) as c,
    ):
        seen["pids"] = c.pids()
        seen["ports"] = c.ports()
        assert c.kubectl("get", "nodes").returncode == 0
        raise RuntimeError("simulated test failure")
    assert len(seen["pids"]) >= 5 and seen["ports"]
    assert not [p for p in seen["pids"] if harness._pid_alive(p)]
    assert all(harness._port_free(p) for p in seen["ports"])
    assert not workdir.exists()
    # The session cluster is untouched.
    assert cluster.kubectl("get", "nodes").returncode == 0

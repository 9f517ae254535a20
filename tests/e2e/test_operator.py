"""The operator against the real control plane (kwok nodes: 2 CPU, 2 GPU with the taint).

The operator runs locally as the chart's ServiceAccount (operators.py). Every
assertion reads the cluster; waits are `kubectl wait` or polling reads with timeouts.
"""

from __future__ import annotations

import functools
import json

import pytest
import yaml

from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import parse_zoo
from tests.e2e.kube import (
    CPU_NODES,
    GPU_NODES,
    apply,
    can_i,
    eventually,
    get_json,
    kubectl_wait,
    names,
    wait_for_zoo,
    zoo_manifest,
)
from tests.e2e.operators import DRIFT_INTERVAL, ROOT, LocalOperator
from tests.samples import CATALOG, SAMPLES, SHA, SIGNATURE, zoo_body

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "docs" / "examples" / "modelzoo.yaml"


def pods(cluster, namespace: str, zoo: str, model: str) -> list[dict]:
    selector = f"modelzoo.dev/zoo={zoo},modelzoo.dev/model={model}"
    return get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]


def bound_claim(cluster, namespace: str, name: str) -> None:
    """A PersistentVolumeClaim bound to a PersistentVolume made for it (pods using an
    unbound claim would never be scheduled)."""
    volume = f"{namespace}-{name}"
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
            "hostPath": {"path": f"/srv/{volume}"},
            "claimRef": {"namespace": namespace, "name": name},
        },
    })  # fmt: skip
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": volume,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    kubectl_wait(cluster, namespace, "jsonpath={.status.phase}=Bound", f"pvc/{name}", timeout=60)


def condition(zoo: dict, kind: str) -> dict:
    return next(c for c in zoo["status"]["conditions"] if c["type"] == kind)


def test_the_sample_zoo_becomes_ready_with_gpu_and_cpu_placement(cluster, operator, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    zoo = wait_for_zoo(cluster, namespace, "demo")

    assert names(cluster, "deployments", namespace, "demo") == {"demo-faces", "demo-classify"}
    assert names(cluster, "services", namespace, "demo") == {"demo-faces", "demo-classify"}
    faces = pods(cluster, namespace, "demo", "faces")
    classify = pods(cluster, namespace, "demo", "classify")
    assert len(faces) == 1 and len(classify) == 2
    assert all(p["spec"]["nodeName"] in GPU_NODES for p in faces), "GPU model on a GPU node"
    assert all(p["spec"]["nodeName"] in CPU_NODES for p in classify), "CPU model off GPU nodes"
    assert faces[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    models = {m["name"]: m for m in zoo["status"]["models"]}
    assert models["faces"]["url"] == f"http://demo-faces.{namespace}.svc.cluster.local/infer"
    assert models["faces"]["grpcAddress"] == f"demo-faces.{namespace}.svc.cluster.local:8081"
    assert models["classify"]["readyReplicas"] == 2 and models["classify"]["phase"] == "Ready"
    assert zoo["status"]["observedGeneration"] == zoo["metadata"]["generation"]

    table = cluster.kubectl("get", "mz", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODELS", "READY", "GPU", "AGE"]
    assert table[1].split()[:4] == ["demo", "faces,classify", "2/2", "1"]
    wide = cluster.kubectl("get", "mz", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "URL"
    assert models["classify"]["url"] in wide[1]

    events = get_json(
        cluster, "events", "-n", namespace, "--field-selector", "involvedObject.name=demo"
    )["items"]
    assert any(e["reason"] == "Ready" and e["type"] == "Normal" for e in events)


def test_changes_follow_the_spec_and_drift_is_repaired(cluster, operator, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    wait_for_zoo(cluster, namespace, "demo")

    # replicas: the Deployment follows
    cluster.kubectl(
        "patch", "mz", "demo", "-n", namespace, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/models/1/replicas", "value": 3}]',
    )  # fmt: skip
    kubectl_wait(
        cluster, namespace, "jsonpath={.status.readyReplicas}=3", "deployment/demo-classify"
    )
    zoo = wait_for_zoo(cluster, namespace, "demo")
    assert {m["name"]: m["readyReplicas"] for m in zoo["status"]["models"]}["classify"] == 3
    assert names(cluster, "poddisruptionbudgets", namespace, "demo") == {"demo-classify"}

    # a deleted child comes back (a new object: another uid)
    def uid(kind: str, name: str) -> str:
        return get_json(cluster, kind, name, "-n", namespace)["metadata"]["uid"]

    for kind, name in (("deployment", "demo-faces"), ("service", "demo-classify")):
        old_uid = uid(kind, name)
        cluster.kubectl("delete", kind, name, "-n", namespace)
        eventually(
            lambda kind=kind, name=name, old_uid=old_uid: uid(kind, name) != old_uid,
            60,
            f"the deleted {kind} {name} to come back",
        )

    # hand edits of fields the operator sets are undone by the drift timer
    cluster.kubectl("scale", "deployment/demo-classify", "-n", namespace, "--replicas=7")
    cluster.kubectl("set", "image", "deployment/demo-classify", "-n", namespace, "server=evil:1")
    kubectl_wait(
        cluster, namespace, "jsonpath={.spec.replicas}=3", "deployment/demo-classify", timeout=60
    )

    def image() -> str:
        deployment = get_json(cluster, "deployment", "demo-classify", "-n", namespace)
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    eventually(lambda: image() != "evil:1", 60, "the hand-edited image to be put back")
    assert image() == "registry.invalid/modelzoo:e2e"

    # a removed model takes its objects with it
    cluster.kubectl(
        "patch", "mz", "demo", "-n", namespace, "--type=json",
        "-p", '[{"op": "remove", "path": "/spec/models/0"}]',
    )  # fmt: skip
    kubectl_wait(
        cluster, namespace, "delete", "deployment/demo-faces", "service/demo-faces", timeout=60
    )
    zoo = wait_for_zoo(cluster, namespace, "demo")
    assert [m["name"] for m in zoo["status"]["models"]] == ["classify"]
    assert zoo["status"]["gpus"] == 0

    # a re-run changes nothing: no resourceVersion moves over a few drift sweeps
    def versions() -> dict[str, str]:
        out = {}
        for kind in ("deployments", "services", "poddisruptionbudgets"):
            for item in get_json(cluster, kind, "-n", namespace)["items"]:
                out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        zoo = get_json(cluster, "modelzoo", "demo", "-n", namespace)
        out["zoo"] = zoo["metadata"]["resourceVersion"]
        return out

    before = versions()
    # Watch the Deployments through two drift sweeps: no event may arrive.
    watched = cluster.kubectl(
        "get", "deployments", "-n", namespace, "--watch-only", "-o", "name",
        f"--request-timeout={3 * DRIFT_INTERVAL}s", check=False, timeout=60,
    )  # fmt: skip
    assert watched.stdout.strip() == ""
    assert versions() == before


def test_deleting_the_zoo_garbage_collects_everything(cluster, operator, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    wait_for_zoo(cluster, namespace, "demo")
    assert get_json(cluster, "modelzoo", "demo", "-n", namespace)["metadata"].get("finalizers") in (
        None,
        [],
    ), "no finalizer: deletion never waits for the operator"
    cluster.kubectl("delete", "modelzoo", "demo", "-n", namespace, "--timeout=60s", timeout=90)
    kubectl_wait(
        cluster, namespace, "delete", "deployment/demo-faces", "deployment/demo-classify",
        "service/demo-faces", "service/demo-classify", "pdb/demo-classify",
    )  # fmt: skip
    eventually(
        lambda: (
            not get_json(cluster, "pods", "-n", namespace, "-l", "modelzoo.dev/zoo=demo")["items"]
        ),
        120,
        "the pods to go",
    )


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"name": "a", "zoo": "mtcnn", "source": {"url": "https://h/m.pb", "sha256": SHA}},
         "set exactly one of zoo or source"),
        ({"name": "a", "source": {"url": "https://h/m.pb"}, "task": "tensor",
          "signature": SIGNATURE}, "source.url and source.s3 need source.sha256"),
        ({"name": "a", "source": {"s3": {"endpoint": "https://s3.example", "bucket": "b",
          "key": "k"}}, "task": "tensor", "signature": SIGNATURE},
         "source.url and source.s3 need source.sha256"),
        ({"name": "a", "source": {"url": "https://h/m.pb", "sha256": SHA,
          "s3": {"endpoint": "https://s3.example", "bucket": "b", "key": "k"}},
          "task": "tensor", "signature": SIGNATURE},
         "source needs exactly one of url, s3 or pvc"),
        ({"name": "a", "source": {"url": "https://h/m.pb", "sha256": SHA}},
         "needs signature and task"),
        ({"name": "a", "zoo": "mtcnn", "replicas": -1}, "greater than or equal to 0"),
        ({"name": "a", "zoo": "mtcnn", "gpu": -2}, "greater than or equal to 0"),
        ({"name": "Bad_Name", "zoo": "mtcnn"}, "spec.models[0].name"),
        ({"name": "a", "zoo": "mtcnn", "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
         "minReplicas must not exceed maxReplicas"),
        ({"name": "a", "zoo": "mtcnn", "batching": {"maxBatchSize": 0}}, "maxBatchSize"),
        ({"name": "a", "zoo": "mtcnn", "replica": 2}, 'unknown field "spec.models[0].replica"'),
        ({"name": "a", "source": {"pvc": {"claimName": "c", "path": "a/../../etc"}},
          "task": "tensor", "signature": SIGNATURE}, "path must not contain .."),
    ],
)  # fmt: skip
def test_schema_invalid_specs_are_refused_with_a_readable_message(
    cluster, chart, namespace, model, words
):
    result = apply(cluster, namespace, zoo_manifest("bad", model), check=False)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr


def test_duplicate_model_names_and_bad_zoo_names_are_refused(cluster, chart, namespace):
    twice = zoo_manifest("bad", {"name": "a", "zoo": "mtcnn"}, {"name": "a", "zoo": "nsfw"})
    result = apply(cluster, namespace, twice, check=False)
    assert result.returncode != 0 and "Duplicate value" in result.stderr
    digit = zoo_manifest("1bad", {"name": "a", "zoo": "mtcnn"})
    result = apply(cluster, namespace, digit, check=False)
    assert result.returncode != 0 and "must start with a letter" in result.stderr


def test_an_unworkable_zoo_is_degraded_with_a_warning_and_others_are_served(
    cluster, operator, namespace
):
    broken = zoo_manifest(
        "broken",
        {"name": "nope", "zoo": "resnet"},
        {"name": "onpvc", "source": {"pvc": {"claimName": "missing", "path": "m.pb"}},
         "task": "tensor", "signature": SIGNATURE},
        {"name": "fine", "zoo": "nsfw"},
    )  # fmt: skip
    apply(cluster, namespace, broken)
    zoo = wait_for_zoo(cluster, namespace, "broken", "Degraded")
    message = condition(zoo, "Degraded")["message"]
    assert "unknown zoo entry 'resnet'" in message
    assert "PersistentVolumeClaim 'missing' not found" in message
    assert condition(zoo, "Ready")["status"] == "False"
    phases = {m["name"]: m["phase"] for m in zoo["status"]["models"]}
    assert phases["nope"] == phases["onpvc"] == "Failed"
    eventually(
        lambda: {m["name"]: m["phase"] for m in get_json(
            cluster, "modelzoo", "broken", "-n", namespace)["status"]["models"]}["fine"] == "Ready",
        120, "the workable model of the broken zoo to be served",
    )  # fmt: skip
    warnings = get_json(
        cluster, "events", "-n", namespace,
        "--field-selector", "involvedObject.name=broken,type=Warning",
    )["items"]  # fmt: skip
    assert [w["reason"] for w in warnings] == ["Degraded"]
    assert "resnet" in warnings[0]["message"]

    # the operator keeps serving other zoos, and does not crash or storm
    apply(cluster, namespace, zoo_manifest("healthy", {"name": "m", "zoo": "mobilenet"}))
    wait_for_zoo(cluster, namespace, "healthy")
    assert operator.alive()
    after_sweeps = get_json(
        cluster, "events", "-n", namespace,
        "--field-selector", "involvedObject.name=broken,type=Warning",
    )["items"]  # fmt: skip
    assert len(after_sweeps) == 1, "one Warning, not one per sweep"

    # the missing claim appears: the model recovers on the next sweep
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "missing"},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    apply(cluster, namespace, pvc)
    eventually(
        lambda: "broken-onpvc" in names(cluster, "deployments", namespace, "broken"),
        60,
        "the PVC model to be deployed once its claim exists",
    )


def test_pods_are_admitted_in_a_restricted_namespace(cluster, operator, namespace):
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    zoo = zoo_manifest(
        "locked",
        {"name": "faces", "zoo": "mtcnn", "gpu": 1},
        {"name": "custom", "source": {"url": "https://models.example/m.pb", "sha256": SHA},
         "task": "tensor", "signature": SIGNATURE,
         "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "targetInflight": 4}},
        {"name": "onpvc", "source": {"pvc": {"claimName": "graphs", "path": "m.pb"}},
         "task": "tensor", "signature": SIGNATURE, "replicas": 2},
    )  # fmt: skip
    bound_claim(cluster, namespace, "graphs")
    apply(cluster, namespace, zoo)
    wait_for_zoo(cluster, namespace, "locked")
    assert len(pods(cluster, namespace, "locked", "faces")) == 1
    assert len(pods(cluster, namespace, "locked", "custom")) == 2, "the HPA's minReplicas"
    assert len(pods(cluster, namespace, "locked", "onpvc")) == 2
    refused = [
        e
        for e in get_json(cluster, "events", "-n", namespace)["items"]
        if e["reason"] == "FailedCreate"
    ]
    assert refused == []
    assert names(cluster, "horizontalpodautoscalers", namespace, "locked") == {"locked-custom"}
    assert names(cluster, "configmaps", namespace, "locked") == {
        "locked-custom-signature",
        "locked-onpvc-signature",
    }


def test_built_manifests_pass_the_api_servers_validation(cluster, chart, namespace):
    """Server-side dry run of every builder branch (besides the operator applying them)."""
    zoo = parse_zoo(zoo_body(*SAMPLES.values(), namespace=namespace), CATALOG)
    manifests = [m for model in zoo.models for m in builders.model_children(zoo, model, Settings())]
    items = {"apiVersion": "v1", "kind": "List", "items": manifests}
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=e2e", "-f", "-",
        input=json.dumps(items), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(manifests), result.stdout


def test_the_operator_restarted_mid_reconcile_converges_without_duplicates(
    cluster, operator, namespace
):
    models = [{"name": f"m{i}", "zoo": "mobilenet", "replicas": 2} for i in range(10)]
    apply(cluster, namespace, zoo_manifest("big", *models))
    eventually(
        lambda: len(names(cluster, "deployments", namespace, "big")) >= 1,
        60,
        "the first Deployment",
    )
    operator.kill()  # mid-reconcile: some children applied, the status not written
    operator.start(priority=200 + operator.starts)  # above the dead peer's, so no pause
    zoo = wait_for_zoo(cluster, namespace, "big")
    assert zoo["status"]["ready"] == "10/10"
    deployments = get_json(cluster, "deployments", "-n", namespace, "-l", "modelzoo.dev/zoo=big")
    assert sorted(d["metadata"]["name"] for d in deployments["items"]) == sorted(
        f"big-m{i}" for i in range(10)
    )
    for deployment in deployments["items"]:
        owners = deployment["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners] == [zoo["metadata"]["uid"]]
    replicasets = get_json(cluster, "replicasets", "-n", namespace, "-l", "modelzoo.dev/zoo=big")
    assert len(replicasets["items"]) == 10, "no rollout churn from the restart"


def test_a_second_replica_stands_by_and_takes_over(
    cluster, chart, operator, sa_kubeconfig, namespace, tmp_path
):
    """Two operators at once (the chart's replicaCount: 2): kopf peering keeps one active."""
    standby = LocalOperator(sa_kubeconfig, tmp_path, chart.peering)
    standby.start(priority=1)
    try:
        peers = eventually(
            lambda: get_json(cluster, "clusterkopfpeering", chart.peering).get("status"),
            60,
            "the peering object to list the replicas",
        )
        eventually(
            lambda: (
                standby.identity
                in get_json(cluster, "clusterkopfpeering", chart.peering).get("status", {})
            ),
            60,
            "the standby to join the peering",
        )
        assert operator.identity in peers
        apply(cluster, namespace, zoo_manifest("first", {"name": "m", "zoo": "mobilenet"}))
        wait_for_zoo(cluster, namespace, "first")
        assert "Resuming operations" not in standby.output(), "the standby stays paused"
        assert "Handler 'reconcile'" not in standby.output(), "the standby did not act"
        operator.stop()  # a graceful exit leaves the peering at once
        eventually(
            lambda: "Resuming operations" in standby.output(), 90, "the standby to take over"
        )
        apply(cluster, namespace, zoo_manifest("second", {"name": "m", "zoo": "nsfw"}))
        wait_for_zoo(cluster, namespace, "second")
        assert "Handler 'reconcile' succeeded" in standby.output()
    finally:
        standby.stop()
        if not operator.alive():
            operator.start(priority=200 + operator.starts)


def test_the_operator_acts_with_the_charts_service_account_only(cluster, chart, operator):
    assert "token" in yaml.safe_load(operator.kubeconfig.read_text())["users"][0]["user"]
    assert "client-certificate-data" not in operator.kubeconfig.read_text()
    subject = f"system:serviceaccount:{chart.namespace}:{chart.service_account}"
    can = functools.partial(can_i, cluster, subject)

    assert can("patch", "deployments.apps", "-n", "anywhere")
    assert can("patch", "modelzoos.modelzoo.dev/status", "-n", "anywhere")
    assert can("get", "persistentvolumeclaims", "-n", "anywhere")
    assert can("patch", f"clusterkopfpeerings.kopf.dev/{chart.peering}")
    assert not can("list", "persistentvolumeclaims", "-n", "anywhere")
    # A metadata-only get, to see that an auth Secret exists; never list or watch.
    assert can("get", "secrets", "-n", "anywhere")
    assert not can("list", "secrets", "-n", "anywhere")
    assert not can("watch", "secrets", "-n", "anywhere")
    assert not can("create", "pods", "-n", "anywhere")
    assert not can("delete", "modelzoos.modelzoo.dev", "-n", "anywhere")
    assert not can("update", "deployments.apps", "-n", "anywhere")
    assert not can("delete", "nodes")
    assert not can("create", "clusterrolebindings.rbac.authorization.k8s.io")

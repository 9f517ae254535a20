"""The Helm chart with the real `helm` CLI and control plane: lint, strict values, every
rendered manifest valid for the pinned Kubernetes, install, `helm test`, the CRD it ships
(documented for `kubectl explain`), and the namespaced variant."""

from __future__ import annotations

import functools
import json

import pytest
import yaml

from tests.cluster_tools.k8s_openapi import k8s_errors
from tests.e2e.kube import can_i, get_json
from tests.e2e.operators import CHART, RELEASE, RELEASE_NAMESPACE

pytestmark = pytest.mark.e2e


def template(cluster, *args: str) -> list[dict]:
    out = cluster.helm("template", "t", str(CHART), "-n", "ops", "--include-crds", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_helm_lint_is_clean(cluster):
    for values in ([], ["--set", "replicaCount=2", "--set", "watchNamespaces={a,b}"]):
        result = cluster.helm("lint", "--strict", str(CHART), *values)
        assert "0 chart(s) failed" in result.stdout, result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "replicaCount=2"],
        ["--set", "watchNamespaces={team-a,team-b}"],
        ["--set", "peering.enabled=false", "--set", "rbac.create=false"],
    ],
)
def test_every_rendered_manifest_is_valid_for_the_pinned_kubernetes(cluster, values):
    docs = template(cluster, *values)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "Job"} <= kinds
    for doc in docs:
        if doc["kind"] in ("ClusterKopfPeering", "KopfPeering"):
            continue  # kopf's own resources: no schema in Kubernetes' OpenAPI
        assert k8s_errors(doc) == [], (doc["kind"], doc["metadata"]["name"])


def test_values_are_strict(cluster):
    result = cluster.helm("template", "t", str(CHART), "--set", "replicas=2", check=False)
    assert result.returncode != 0 and "replicas" in result.stderr
    result = cluster.helm("template", "t", str(CHART), "--set", "logLevel=loud", check=False)
    assert result.returncode != 0
    result = cluster.helm(
        "template", "t", str(CHART), "--set", "replicaCount=2", "--set", "peering.enabled=false",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "peering" in result.stderr


def test_rbac_follows_the_watched_namespaces(cluster):
    docs = template(cluster, "--set", "watchNamespaces={team-a,team-b}")
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert not [
        d
        for d in docs
        if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "t-modelzoo"
    ], "no cluster-wide access to children when namespaced"
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    operator = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELZOO_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert env["MODELZOO_OPERATOR_PEERING"] == "t-modelzoo"


def test_the_chart_installs_and_helm_test_passes(cluster, chart):
    status = json.loads(
        cluster.helm("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    )
    assert status["info"]["status"] == "deployed"
    assert "kubectl apply -f docs/examples/modelzoo.yaml" in status["info"]["notes"]
    deployment = get_json(cluster, "deployment", f"{RELEASE}-modelzoo", "-n", RELEASE_NAMESPACE)
    assert deployment["status"].get("availableReplicas") == 1
    get_json(cluster, "clusterkopfpeering", chart.peering)
    result = cluster.helm("test", RELEASE, "-n", RELEASE_NAMESPACE, "--timeout", "180s")
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_the_installed_crd_is_the_repos_and_explains_itself(cluster, chart):
    crd = get_json(cluster, "crd", "modelzoos.modelzoo.dev")
    assert crd["spec"]["names"]["shortNames"] == ["mz"]
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"
    explained = cluster.kubectl("explain", "modelzoo.spec.models").stdout
    assert "The models to serve" in explained
    assert "gpu" in explained and "GPUs per pod" in explained
    deeper = cluster.kubectl("explain", "modelzoo.spec.models.source.url").stdout
    assert "sha256" in deeper


def test_a_namespaced_install_works_next_to_the_cluster_wide_one(cluster, chart, namespace):
    release = "mzns"
    try:
        cluster.helm(
            "install", release, str(CHART), "-n", namespace,
            "--set", f"watchNamespaces={{{namespace}}}", "--wait", "--timeout", "180s",
        )  # fmt: skip
        get_json(cluster, "kopfpeering", f"{release}-modelzoo", "-n", namespace)
        can = functools.partial(
            can_i, cluster, f"system:serviceaccount:{namespace}:{release}-modelzoo"
        )
        assert can("patch", "deployments.apps", "-n", namespace)
        assert not can("patch", "deployments.apps", "-n", "default")
        assert can("patch", f"kopfpeerings.kopf.dev/{release}-modelzoo", "-n", namespace)
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)

"""Hardening of what the chart renders (`helm template`, no cluster): every pod (the
operator Deployment and the `helm test` Job) meets the Pod Security Standard
`restricted` by the same independent checker the builders' pods pass, and the RBAC
stays narrow (no wildcards, Secrets only `get`, NetworkPolicies only when enabled).

That the RBAC grants nothing unused is measured on a real API server's audit log by
tests/e2e/test_operator_rbac.py. helm is the pinned one from tests/cluster (built, or
reused from the cache, by tests/cluster/build.sh).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest
import yaml

from modelzoo_operator.settings import from_env
from tests.cluster import harness
from tests.cluster_tools.k8s_openapi import k8s_errors
from tests.unit.test_operator_builders import restricted_violations

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelzoo"

VALUES = {
    "defaults": [],
    "networkpolicy": ["--set", "networkPolicy.enabled=true"],
    "two-replicas": ["--set", "replicaCount=2"],
    "namespaced": ["--set", "watchNamespaces={team-a,team-b}"],
    "no-secret-check": ["--set", "models.checkAuthSecrets=false"],
    "standalone": ["--set", "peering.enabled=false"],
}
# Pod Security `restricted` does not forbid a service account token; the checker's extra
# rule (no token) holds for model pods and the test Job, but the operator IS an API
# client: its token is its identity (the chart's ServiceAccount and RBAC).
NEEDS_ITS_TOKEN = {"automountServiceAccountToken must be false"}
# Verbs that let a subject widen its own rights or act as another.
ESCALATING = {"*", "escalate", "bind", "impersonate"}


@functools.cache
def helm() -> Path:
    found = harness.bin_dir() / "helm"
    if not found.exists():  # a fresh machine: build.sh builds the pinned set once (cached)
        found = harness.ensure_binaries() / "helm"
    return found


def render(*args: str) -> list[dict]:
    out = subprocess.run(
        [str(helm()), "template", "t", str(CHART), "-n", "ops", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@functools.cache
def rendered(name: str) -> tuple[dict, ...]:
    return tuple(render(*VALUES[name]))


def pod_specs(docs) -> dict[str, dict]:
    """Every pod template the chart renders, by kind/name."""
    out = {}
    for doc in docs:
        template = (doc.get("spec") or {}).get("template")
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet") and template:
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = template["spec"]
        elif doc["kind"] == "Pod":
            out[f"Pod/{doc['metadata']['name']}"] = doc["spec"]
    return out


def rules(docs) -> list[dict]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


def grants(docs) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules(docs)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("values", sorted(VALUES))
def test_every_rendered_pod_meets_pod_security_restricted(values):
    pods = pod_specs(rendered(values))
    assert set(pods) == {"Deployment/t-modelzoo", "Job/t-modelzoo-test"}, sorted(pods)
    operator = restricted_violations(pods["Deployment/t-modelzoo"])
    assert set(operator) <= NEEDS_ITS_TOKEN, operator
    assert restricted_violations(pods["Job/t-modelzoo-test"]) == []
    assert pods["Job/t-modelzoo-test"]["automountServiceAccountToken"] is False


def test_the_restricted_checker_sees_a_broken_chart_pod():
    spec = yaml.safe_load(yaml.safe_dump(pod_specs(rendered("defaults"))["Job/t-modelzoo-test"]))
    spec["containers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    spec["securityContext"]["runAsUser"] = 0
    problems = restricted_violations(spec)
    assert any("capabilities" in p for p in problems) and any("runAsUser 0" in p for p in problems)


@pytest.mark.parametrize("values", sorted(VALUES))
def test_rendered_manifests_validate_against_the_pinned_openapi_schema(values):
    for doc in rendered(values):
        if doc["kind"] in ("ClusterKopfPeering", "KopfPeering"):
            continue  # kopf's own resources: no schema in Kubernetes' OpenAPI
        assert k8s_errors(doc) == [], (doc["kind"], doc["metadata"]["name"])


@pytest.mark.parametrize("values", sorted(VALUES))
def test_rbac_has_no_wildcards_and_no_escalation(values):
    for rule in rules(rendered(values)):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not set(rule["verbs"]) & ESCALATING, rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
    granted = grants(rendered(values))
    resources = {r for _, r, _ in granted}
    for never in (
        "pods/exec",
        "pods/log",
        "nodes",
        "serviceaccounts/token",
        "roles",
        "clusterroles",
    ):
        assert never not in resources
    # Pods are read only: their statuses say why a model's pods cannot start.
    assert {v for _, r, v in granted if r == "pods"} == {"list", "watch"}


def test_secrets_only_get_and_only_with_the_check():
    on = {(g, r, v) for g, r, v in grants(rendered("defaults")) if r == "secrets"}
    assert on == {("", "secrets", "get")}, "no list/watch: Secrets cannot be enumerated"
    assert not [g for g in grants(rendered("no-secret-check")) if g[1] == "secrets"]
    env = operator_env(rendered("no-secret-check"))
    assert env["MODELZOO_OPERATOR_CHECK_SECRETS"] == "false"
    assert operator_env(rendered("defaults"))["MODELZOO_OPERATOR_CHECK_SECRETS"] == "true"


def test_networkpolicy_rights_and_settings_only_when_enabled():
    assert not [g for g in grants(rendered("defaults")) if g[1] == "networkpolicies"]
    assert operator_env(rendered("defaults"))["MODELZOO_OPERATOR_NETWORK_POLICY"] == "false"
    on = {v for g, r, v in grants(rendered("networkpolicy")) if r == "networkpolicies"}
    assert on == {"list", "watch", "create", "patch", "delete"}
    env = operator_env(rendered("networkpolicy"))
    assert env["MODELZOO_OPERATOR_NETWORK_POLICY"] == "true"
    assert env["MODELZOO_OPERATOR_NETWORK_POLICY_INFERENCE_FROM"] == '[{"podSelector":{}}]'
    assert env["MODELZOO_OPERATOR_NETWORK_POLICY_EGRESS"] == "[]"


def test_networkpolicy_values_flow_into_the_operator_settings():
    docs = render(
        "--set", "networkPolicy.enabled=true",
        "--set", "networkPolicy.scrapeFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "--set", "networkPolicy.egress[0].ports[0].port=53",
        "--set", "networkPolicy.egress[0].ports[0].protocol=UDP",
    )  # fmt: skip
    settings = from_env(operator_env(docs))
    assert settings.network_policy
    assert settings.network_policy_inference_from == ({"podSelector": {}},)
    assert settings.network_policy_scrape_from == (
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}},
    )
    assert settings.network_policy_egress == ({"ports": [{"port": 53, "protocol": "UDP"}]},)


def test_networkpolicy_values_are_strict():
    bad = subprocess.run(
        [str(helm()), "template", "t", str(CHART),
         "--set", "networkPolicy.inferenceFrom[0].podSelecter.matchLabels.a=b"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "podSelecter" in bad.stderr


def test_children_are_never_read_one_by_one():
    """The operator lists and watches its children and server-side applies them; a `get`
    on them would be an unused grant (the audit-log test checks the rest)."""
    children = {"deployments", "services", "configmaps", "poddisruptionbudgets"}
    children |= {"horizontalpodautoscalers", "networkpolicies"}
    for _, resource, verb in grants(rendered("networkpolicy")):
        if resource in children:
            assert verb in {"list", "watch", "create", "patch", "delete"}, (resource, verb)
    status = {v for _, r, v in grants(rendered("defaults")) if r == "modelzoos/status"}
    assert status == {"patch"}


def operator_env(docs) -> dict[str, str]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}

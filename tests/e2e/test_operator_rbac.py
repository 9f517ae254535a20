"""Security on the real control plane (the audited cluster of audit.py, whose
chart has NetworkPolicies on): auth Secrets mounted and checked, NetworkPolicies per
model, and the chart's RBAC compared with what the operator's ServiceAccount actually did,
as the API server's audit log records it.

The operator runs locally with a token of the chart's ServiceAccount and the settings of
the chart's Deployment. Assertions read the cluster (and its audit log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.audit import AuditedCluster, audit_stamp
from tests.e2e.kube import (
    apply,
    eventually,
    get_json,
    kubectl_wait,
    names,
    wait_for_zoo,
    zoo_manifest,
)
from tests.e2e.operators import RELEASE, RELEASE_NAMESPACE, LocalOperator
from tests.samples import MONITORING, SHA, SIGNATURE

pytestmark = pytest.mark.e2e
TOKEN = "e2e-very-secret-token-0451"  # the Secret's value: must never appear anywhere else
CHILD_KINDS = (
    "deployments", "services", "configmaps", "poddisruptionbudgets",
    "horizontalpodautoscalers", "networkpolicies",
)  # fmt: skip

# Grants the operator needs that the scenario below cannot make it use, each with why.
ERROR_PATH_ONLY = {
    # Checked by the OwnerReferencesPermissionEnforcement admission plugin (OpenShift and
    # hardened clusters enable it) when a child's ownerReference sets blockOwnerDeletion.
    # The plugin asks the authorizer inside the API server: no request of the operator's
    # own ever carries this verb, so no audit event can show it (and this harness's API
    # server does not run the plugin).
    ("modelzoo.dev", "modelzoos/finalizers", "update"),
}


@pytest.fixture(scope="module")
def since(audited: AuditedCluster) -> str:
    """This module's part of the audit log (test_operator_faults.py restarts the API
    server on the same cluster, which refuses requests while its RBAC cache warms up)."""
    return audit_stamp()


@pytest.fixture(scope="module")
def op(audited: AuditedCluster, since: str) -> Iterator[LocalOperator]:
    """One operator for this module, stopped at its end (the faults tests start theirs)."""
    started, _ = audited.operator("rbac")
    try:
        yield started
    finally:
        started.stop()


def secret(audited: AuditedCluster, namespace: str, name: str) -> None:
    audited.kubectl(
        "create", "secret", "generic", name, "-n", namespace,
        f"--from-literal=tokens={TOKEN}",
    )  # fmt: skip


def degraded_message(zoo: dict) -> str:
    (condition,) = [c for c in zoo["status"]["conditions"] if c["type"] == "Degraded"]
    return condition["message"] if condition["status"] == "True" else ""


# ------------------------------------------------------------------ auth
def test_a_zoo_with_auth_mounts_the_secret_and_passes_the_flag(audited, op, audited_namespace):
    ns = audited_namespace
    secret(audited, ns, "team-tokens")
    secret(audited, ns, "admin-tokens")
    zoo = zoo_manifest(
        "locked",
        {"name": "open-probes", "zoo": "mobilenet"},
        {"name": "all-locked", "zoo": "nsfw", "auth": {"secretName": "admin-tokens",
                                                       "scope": "all"}},
    )  # fmt: skip
    zoo["spec"]["auth"] = {"secretName": "team-tokens"}
    apply(audited.cluster, ns, zoo)
    found = wait_for_zoo(audited.cluster, ns, "locked", "Ready")
    # The API server applied the CRD's defaults.
    assert found["spec"]["auth"] == {"secretName": "team-tokens", "key": "tokens",
                                     "scope": "inference"}  # fmt: skip

    for model, secret_name, scope in (
        ("open-probes", "team-tokens", "inference"),
        ("all-locked", "admin-tokens", "all"),
    ):
        deployment = get_json(audited.cluster, "deployment", f"locked-{model}", "-n", ns)
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"] == {
            "secretName": secret_name,
            "items": [{"key": "tokens", "path": "tokens"}],
            "defaultMode": 0o440,
        }
        assert pod["securityContext"]["fsGroup"] == 10001
        (container,) = pod["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == "/var/run/modelzoo/auth" and mount["readOnly"] is True
        args = container["args"]
        assert args[args.index("--token-file") + 1] == "/var/run/modelzoo/auth/tokens"
        assert args[args.index("--auth-scope") + 1] == scope
        probe = container["readinessProbe"]
        assert ("tcpSocket" in probe) == (scope == "all")
        assert ("httpGet" in probe) == (scope == "inference")

    # The tokens appear nowhere the operator writes (nor in its log).
    written = [
        get_json(audited.cluster, "modelzoo", "locked", "-n", ns),
        get_json(audited.cluster, "events", "-n", ns),
        *(get_json(audited.cluster, kind, "-n", ns) for kind in CHILD_KINDS),
        get_json(audited.cluster, "replicasets,pods", "-n", ns),
    ]
    assert TOKEN not in json.dumps(written)
    assert TOKEN not in op.output()


def test_a_missing_secret_is_degraded_with_an_event_naming_it(audited, op, audited_namespace):
    ns = audited_namespace
    zoo = zoo_manifest(
        "keyless",
        {"name": "served", "zoo": "mobilenet"},
        {"name": "waiting", "zoo": "nsfw", "auth": {"secretName": "not-yet"}},
    )
    apply(audited.cluster, ns, zoo)
    found = wait_for_zoo(audited.cluster, ns, "keyless", "Degraded")
    message = degraded_message(found)
    assert f"Secret 'not-yet' (auth.secretName) not found in namespace '{ns}'" in message
    phases = {m["name"]: m["phase"] for m in found["status"]["models"]}
    assert phases["waiting"] == "Failed"
    warnings = get_json(
        audited.cluster, "events", "-n", ns,
        "--field-selector", "involvedObject.name=keyless,type=Warning",
    )["items"]  # fmt: skip
    assert [w["reason"] for w in warnings] == ["Degraded"]
    assert "not-yet" in warnings[0]["message"]
    assert "keyless-waiting" not in names(audited.cluster, "deployments", ns, "keyless")
    eventually(
        lambda: "keyless-served" in names(audited.cluster, "deployments", ns, "keyless"),
        60, "the other model to be served",
    )  # fmt: skip

    # The Secret appears: the drift sweep finds it (the operator does not watch Secrets).
    secret(audited, ns, "not-yet")
    wait_for_zoo(audited.cluster, ns, "keyless", "Ready")
    assert "keyless-waiting" in names(audited.cluster, "deployments", ns, "keyless")


# ------------------------------------------------------------------ NetworkPolicy
def test_each_model_gets_a_networkpolicy_owned_by_its_zoo(audited, op, audited_namespace):
    ns = audited_namespace
    zoo = zoo_manifest(
        "fenced", {"name": "a", "zoo": "mobilenet"}, {"name": "b", "zoo": "nsfw", "replicas": 2}
    )
    apply(audited.cluster, ns, zoo)
    found = wait_for_zoo(audited.cluster, ns, "fenced", "Ready")
    assert names(audited.cluster, "networkpolicies", ns, "fenced") == {"fenced-a", "fenced-b"}
    policy = get_json(audited.cluster, "networkpolicy", "fenced-b", "-n", ns)
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "ModelZoo", "fenced", found["metadata"]["uid"],
    )  # fmt: skip
    assert owner["controller"] is True
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "modelzoo.dev/zoo": "fenced",
        "modelzoo.dev/model": "b",
    }
    assert spec["policyTypes"] == ["Ingress"]
    http, grpc = {"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 8081}
    # The chart's values (AUDITED_VALUES) reached the operator through its Deployment's env;
    # inference peers reach REST and gRPC, the scraper only the HTTP port (/metrics).
    assert spec["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [http, grpc]},
        {"from": [MONITORING], "ports": [http]},
    ]
    pods = get_json(audited.cluster, "pods", "-n", ns, "-l", "modelzoo.dev/model=b")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()

    # Deleted by hand: it comes back. Model removed: it goes. Zoo deleted: all go.
    old = policy["metadata"]["uid"]
    audited.kubectl("delete", "networkpolicy", "fenced-b", "-n", ns)
    eventually(
        lambda: get_json(audited.cluster, "networkpolicy", "fenced-b", "-n", ns)["metadata"]["uid"]
        != old,
        60, "the deleted NetworkPolicy to come back",
    )  # fmt: skip
    audited.kubectl(
        "patch", "mz", "fenced", "-n", ns, "--type=json",
        "-p", '[{"op": "remove", "path": "/spec/models/0"}]',
    )  # fmt: skip
    kubectl_wait(audited.cluster, ns, "delete", "networkpolicy/fenced-a", timeout=60)
    audited.kubectl("delete", "mz", "fenced", "-n", ns, "--timeout=60s", timeout=90)
    kubectl_wait(audited.cluster, ns, "delete", "networkpolicy/fenced-b")


# ------------------------------------------------------------------ RBAC vs the audit log
def granted(audited: AuditedCluster) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule bound to the operator, as installed."""
    manifest = audited.cluster.helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE).stdout
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    bound = {
        d["roleRef"]["name"]
        for d in docs
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(s["name"] == audited.chart.service_account for s in d["subjects"])
    }
    return {
        (group, resource, verb)
        for d in docs
        if d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"] in bound
        for rule in d["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def exercised(events: list[dict]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every allowed resource request. A server-side apply
    that made a new object (201) is a patch the API server also authorized as a create."""
    used = set()
    for event in events:
        ref = event.get("objectRef")
        if not ref or event["annotations"].get("authorization.k8s.io/decision") != "allow":
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        group = ref.get("apiGroup", "")
        used.add((group, resource, event["verb"]))
        if event["verb"] == "patch" and event.get("responseStatus", {}).get("code") == 201:
            used.add((group, resource, "create"))
    return used


def test_the_rbac_grants_only_what_the_operator_uses(audited, op, since, audited_namespace):
    """Create, update, delete and drift of a zoo that uses every kind of child, a missing
    claim and an auth Secret; then every granted (resource, verb) must show in the audit
    log as used by the operator's ServiceAccount, or be in ERROR_PATH_ONLY."""
    ns = audited_namespace
    secret(audited, ns, "audit-tokens")
    full = {
        "name": "full", "source": {"url": "https://models.example/m.pb", "sha256": SHA},
        "task": "tensor", "signature": SIGNATURE, "batching": {"maxBatchSize": 4},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 3},
        "auth": {"secretName": "audit-tokens"},
    }  # fmt: skip
    claim = {"name": "claim", "source": {"pvc": {"claimName": "absent", "path": "m.pb"}},
             "task": "tensor", "signature": SIGNATURE}  # fmt: skip
    plain = {"name": "plain", "zoo": "mobilenet"}
    apply(audited.cluster, ns, zoo_manifest("audit", full, claim, plain))
    wait_for_zoo(audited.cluster, ns, "audit", "Degraded")  # the claim is missing: a Warning event
    assert names(audited.cluster, "horizontalpodautoscalers", ns, "audit") == {"audit-full"}
    assert names(audited.cluster, "poddisruptionbudgets", ns, "audit") == {"audit-full"}

    # Update: the claim model goes (Ready, a Normal event); autoscaling goes (HPA and PDB
    # pruned).
    full_fixed = {k: v for k, v in full.items() if k != "autoscaling"}
    apply(audited.cluster, ns, zoo_manifest("audit", full_fixed, plain))
    wait_for_zoo(audited.cluster, ns, "audit", "Ready")
    eventually(
        lambda: not names(audited.cluster, "horizontalpodautoscalers", ns, "audit")
        and not names(audited.cluster, "poddisruptionbudgets", ns, "audit"),
        60, "the HPA and PDB to be pruned",
    )  # fmt: skip

    # Drift: a deleted Service comes back, a hand-edited Deployment is put back.
    old = get_json(audited.cluster, "service", "audit-plain", "-n", ns)["metadata"]["uid"]
    audited.kubectl("delete", "service", "audit-plain", "-n", ns)
    eventually(
        lambda: get_json(audited.cluster, "service", "audit-plain", "-n", ns)["metadata"]["uid"]
        != old,
        60, "the Service to come back",
    )  # fmt: skip
    audited.kubectl("scale", "deployment/audit-plain", "-n", ns, "--replicas=4")
    kubectl_wait(
        audited.cluster, ns, "jsonpath={.spec.replicas}=1", "deployment/audit-plain", timeout=60
    )

    # Delete a model (its ConfigMap, NetworkPolicy, Deployment, Service go), then the zoo.
    apply(audited.cluster, ns, zoo_manifest("audit", plain))
    kubectl_wait(
        audited.cluster, ns, "delete", "configmap/audit-full-signature",
        "networkpolicy/audit-full", "deployment/audit-full", "service/audit-full", timeout=60,
    )  # fmt: skip
    audited.kubectl("delete", "mz", "audit", "-n", ns, "--timeout=60s", timeout=90)

    # The drift sweep's peering check runs every few seconds: wait for one after all this.
    now = audit_stamp()
    eventually(
        lambda: any(
            e["verb"] == "get" and e["objectRef"]["resource"] == "clusterkopfpeerings"
            for e in audited.audit_events(now)
        ),
        60, "a drift sweep",
    )  # fmt: skip

    events = audited.audit_events(since)
    refused = [
        (e["verb"], e["requestURI"])
        for e in events
        if e["annotations"].get("authorization.k8s.io/decision") != "allow"
    ]
    assert refused == [], "the operator was refused something it tried"
    grants, used = granted(audited), exercised(events)
    assert used <= grants
    unused = grants - used - ERROR_PATH_ONLY
    assert unused == set(), f"granted but never used: {sorted(unused)}"
    assert grants >= ERROR_PATH_ONLY, "the allowlist names only grants that exist"
    # Secrets: one by one, by name; never listed or watched.
    secret_verbs = {e["verb"] for e in events if (e.get("objectRef") or {}).get("resource")
                    == "secrets"}  # fmt: skip
    assert secret_verbs == {"get"}

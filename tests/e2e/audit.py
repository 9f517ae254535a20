"""The audited cluster: a second, private control plane for the tests that hurt it
(test_operator_faults.py: API server restarted and paused) or read its audit log
(test_operator_rbac.py: what the operator's ServiceAccount actually did). Its chart is
installed with NetworkPolicies on (AUDITED_VALUES); its operators are started per test or
module."""

from __future__ import annotations

import datetime
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.kube import get_json
from tests.e2e.operators import (
    RELEASE_NAMESPACE,
    SERVICE_ACCOUNT,
    Chart,
    LocalOperator,
    write_sa_kubeconfig,
)
from tests.samples import MONITORING

OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
# Only the operator's ServiceAccount is recorded, at Metadata level (who, what, which
# object, the answer; never a body, so no Secret data either), once per request.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}
AUDITED_VALUES = [
    "--set", "networkPolicy.enabled=true",
    "--set-json", f"networkPolicy.scrapeFrom={json.dumps([MONITORING])}",
]  # fmt: skip
# Peers with a higher priority pause the others: each operator started here outranks
# every earlier one (a killed one stays listed in the peering until its lifetime ends).
_PRIORITIES = itertools.count(1000)


def audit_stamp() -> str:
    """Now, in the audit log's timestamp format (comparable as strings)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AuditedCluster:
    cluster: Any  # harness.Cluster
    chart: Chart
    workdir: Path

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def audit_events(self, since: str = "") -> list[dict]:
        """The operator's requests (one ResponseComplete-or-ResponseStarted event each,
        deduplicated by auditID), optionally those received at or after `since` (RFC 3339)."""
        seen: dict[str, dict] = {}
        for line in self.cluster.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # the line the API server is writing right now
                continue
            if event["user"]["username"] != OPERATOR_USER:
                continue
            if since and event["requestReceivedTimestamp"] < since:
                continue
            seen.setdefault(event["auditID"], event)
            if event["stage"] == "ResponseComplete":
                seen[event["auditID"]] = event
        return list(seen.values())

    def api_server_pid(self) -> int:
        return int((self.cluster.cluster_dir / "pids" / "kube-apiserver.pid").read_text())

    def chart_env(self) -> dict[str, str]:
        """The installed operator Deployment's MODELZOO_OPERATOR_* settings that the local
        operators take over from the chart (NetworkPolicy, the Secret check)."""
        deployment = get_json(self.cluster, "deployment", SERVICE_ACCOUNT, "-n", RELEASE_NAMESPACE)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return {
            e["name"]: e["value"]
            for e in container["env"]
            if e["name"].startswith(("MODELZOO_OPERATOR_NETWORK_POLICY", "MODELZOO_OPERATOR_CHECK"))
        }

    @staticmethod
    def priority() -> int:
        """A peering priority above every one handed out before."""
        return next(_PRIORITIES)

    def operator(
        self, name: str, env: dict[str, str] | None = None, server: str = "", priority: int = 0
    ) -> tuple[LocalOperator, str]:
        """A started operator with its own token (and credential id) and the chart's settings;
        by default it outranks every operator started before it."""
        priority = priority or self.priority()
        workdir = self.workdir / f"{name}-{priority}"
        workdir.mkdir()
        jti = write_sa_kubeconfig(self.cluster, self.chart, workdir / "kubeconfig", server)
        started = LocalOperator(
            workdir / "kubeconfig",
            workdir,
            self.chart.peering,
            extra_env={**self.chart_env(), **(env or {})},
        )
        started.start(priority=priority)
        return started, jti

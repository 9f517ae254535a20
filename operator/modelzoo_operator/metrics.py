"""The operator's own Prometheus metrics: its reconcile passes, and the zoos' status as it
writes it (conditions, replicas and ready replicas per model).

The gauges follow the status the reconciler computes, so they say exactly what
`kubectl get modelzoo` says; a zoo that is deleted leaves no series behind.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelzoo_operator.status import DEGRADED, PROGRESSING, READY

Key = tuple[str, str]  # (namespace, zoo)
CONDITIONS = (READY, PROGRESSING, DEGRADED)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "modelzoo_operator_reconciles_total",
            "Reconcile passes by kind (full: apply and prune; status: status only) and "
            "result (ok, gone: the zoo was deleted, error: the pass raised and is retried).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "modelzoo_operator_reconcile_duration_seconds",
            "Time of one reconcile pass, API calls included.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.zoos = Gauge(
            "modelzoo_operator_zoos",
            "Zoos by status condition (Ready, Progressing, Degraded) and its status.",
            ["condition", "status"],
            registry=self.registry,
        )
        self.replicas = Gauge(
            "modelzoo_operator_model_replicas",
            "A model's desired replicas, as in the zoo's status.",
            ["namespace", "zoo", "model"],
            registry=self.registry,
        )
        self.ready_replicas = Gauge(
            "modelzoo_operator_model_ready_replicas",
            "A model's ready replicas, as in the zoo's status.",
            ["namespace", "zoo", "model"],
            registry=self.registry,
        )
        self._conditions: dict[Key, dict[str, str]] = {}
        self._models: dict[Key, set[str]] = {}
        self._count_zoos()

    def observe_status(self, namespace: str, zoo: str, status: Mapping[str, Any]) -> None:
        """Set the gauges from a zoo's status (the one just written, or found unchanged)."""
        key = (namespace, zoo)
        self._conditions[key] = {
            c["type"]: c["status"] for c in status.get("conditions") or () if "type" in c
        }
        models = {m["name"]: m for m in status.get("models") or ()}
        for gone in self._models.get(key, set()) - set(models):
            self._remove_model(key, gone)
        for name, entry in models.items():
            self.replicas.labels(namespace, zoo, name).set(entry.get("replicas") or 0)
            self.ready_replicas.labels(namespace, zoo, name).set(entry.get("readyReplicas") or 0)
        self._models[key] = set(models)
        self._count_zoos()

    def forget(self, namespace: str, zoo: str) -> None:
        """The zoo is gone: drop its series."""
        key = (namespace, zoo)
        for model in self._models.pop(key, set()):
            self._remove_model(key, model)
        self._conditions.pop(key, None)
        self._count_zoos()

    def _remove_model(self, key: Key, model: str) -> None:
        for gauge in (self.replicas, self.ready_replicas):
            with contextlib.suppress(KeyError):  # never set
                gauge.remove(*key, model)

    def _count_zoos(self) -> None:
        counts = Tally(
            (kind, value) for conditions in self._conditions.values()
            for kind, value in conditions.items()
        )  # fmt: skip
        # Every condition and status is exported, 0 included, so that an alert on
        # `{condition="Degraded",status="True"} > 0` has a series to compare.
        for kind in CONDITIONS:
            for value in ("True", "False"):
                self.zoos.labels(kind, value).set(counts.get((kind, value), 0))

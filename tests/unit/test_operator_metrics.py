"""The operator's metrics follow the status it writes, and forget deleted zoos."""

from __future__ import annotations

import asyncio

import pytest

from modelzoo_operator.metrics import OperatorMetrics
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings
from tests.samples import CATALOG

pytestmark = pytest.mark.unit


def status(ready: str, *models: tuple[str, int, int]) -> dict:
    return {
        "conditions": [
            {"type": "Ready", "status": ready},
            {"type": "Progressing", "status": "False" if ready == "True" else "True"},
            {"type": "Degraded", "status": "False"},
        ],
        "models": [{"name": n, "replicas": r, "readyReplicas": ok} for n, r, ok in models],
    }


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_gauges_follow_the_status_and_forget_deleted_zoos_and_models():
    m = OperatorMetrics()
    assert value(m, "modelzoo_operator_zoos", condition="Degraded", status="True") == 0
    m.observe_status("ml", "a", status("False", ("faces", 2, 1), ("classify", 1, 1)))
    m.observe_status("ml", "b", status("True", ("faces", 1, 1)))
    assert value(m, "modelzoo_operator_zoos", condition="Ready", status="True") == 1
    assert value(m, "modelzoo_operator_zoos", condition="Ready", status="False") == 1
    labels = {"namespace": "ml", "zoo": "a", "model": "faces"}
    assert value(m, "modelzoo_operator_model_replicas", **labels) == 2
    assert value(m, "modelzoo_operator_model_ready_replicas", **labels) == 1

    m.observe_status("ml", "a", status("True", ("faces", 2, 2)))  # classify removed
    assert value(m, "modelzoo_operator_model_ready_replicas", **labels) == 2
    gone = {"namespace": "ml", "zoo": "a", "model": "classify"}
    assert value(m, "modelzoo_operator_model_replicas", **gone) is None
    assert value(m, "modelzoo_operator_zoos", condition="Ready", status="True") == 2

    m.forget("ml", "a")
    assert value(m, "modelzoo_operator_model_replicas", **labels) is None
    assert value(m, "modelzoo_operator_zoos", condition="Ready", status="True") == 1


class GoneKube:
    """The zoo is not there (get → None); a failing one raises."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def get(self, *args):
        if self.fail:
            raise OSError("connection refused")
        return None


def test_reconcile_passes_are_counted_by_result():
    m = OperatorMetrics()
    asyncio.run(Reconciler(Settings(), GoneKube(), CATALOG, m).request("ml", "z"))
    assert value(m, "modelzoo_operator_reconciles_total", kind="full", result="gone") == 1
    with pytest.raises(OSError):
        asyncio.run(Reconciler(Settings(), GoneKube(fail=True), CATALOG, m).request("ml", "z"))
    assert value(m, "modelzoo_operator_reconciles_total", kind="full", result="error") == 1
    assert value(m, "modelzoo_operator_reconcile_duration_seconds_count", kind="full") == 2

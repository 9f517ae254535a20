"""Every query of the Grafana dashboard (charts/modelzoo/files/dashboard.json) returns
data from a real Prometheus scraping a real `modelzoo-server` under traffic and the real
operator reconciling a zoo on the test cluster: a renamed metric or label breaks this
test, not the dashboard."""

from __future__ import annotations

import math
import time

import pytest

from tests import dashboard_queries
from tests.dashboard_stack import MODEL, observed, variables
from tests.dashboard_traffic import background_load
from tests.prometheus_process import MISSING, PROMETHEUS, Prometheus

pytestmark = pytest.mark.e2e
WAIT = 120  # seconds for every query to have data (traffic within its rate window)


def has_data(prometheus: Prometheus, expr: str) -> bool:
    """At least one series with a number (histogram_quantile over no traffic gives NaN)."""
    return any(not math.isnan(float(s["value"][1])) for s in prometheus.query(expr))


def empty_queries(prometheus: Prometheus, targets: list[dashboard_queries.Target]) -> list[str]:
    values = variables(MODEL)
    return [
        f"{t.panel} [{t.ref}]: {dashboard_queries.substitute(t.expr, values)}"
        for t in targets
        if not has_data(prometheus, dashboard_queries.substitute(t.expr, values))
    ]


def test_every_dashboard_query_returns_data(cluster, namespace, zoo_dir, tmp_path) -> None:
    if not PROMETHEUS.exists():
        pytest.fail(MISSING, pytrace=False)
    dashboard = dashboard_queries.load()
    targets = dashboard_queries.targets(dashboard)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p.get("targets") for p in panels), "a panel without a query"

    with (
        observed(cluster, namespace, zoo_dir, tmp_path) as stack,
        background_load(stack.server_url, MODEL, concurrency=4, pause=0.02) as statuses,
    ):
        deadline = time.monotonic() + WAIT
        while (empty := empty_queries(stack.prometheus, targets)) and time.monotonic() < deadline:
            time.sleep(2)
        # The model variable's own query (label_values of a metric's label) lists the model.
        (model_variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
        assert "modelzoo_requests_total" in model_variable["definition"]
        listed = stack.prometheus.label_values("model", "modelzoo_requests_total")

    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert MODEL in listed
    assert {200, 400, 415} <= set(statuses), statuses  # successes and both client errors

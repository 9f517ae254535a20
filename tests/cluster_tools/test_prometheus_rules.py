"""The chart's Prometheus rules (charts/modelzoo/files/prometheus-rules.yaml): `promtool
check rules` accepts them, `promtool test rules` runs their unit tests (each alert fires on
series made to trip it and stays silent on healthy ones), the PrometheusRule the chart
renders holds exactly that file's rules, and the PodMonitor selects what the operator's
builders make.

promtool is Debian's (`make promtool`, a prerequisite of `make test`); helm is the pinned
one from tests/cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelzoo_operator.metrics import OperatorMetrics
from tests.cluster_tools.test_chart_hardening import CHART, render, rendered
from tests.samples import SAMPLES, built

pytestmark = pytest.mark.cluster
RULES = CHART / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).parent / "testdata" / "prometheus-rules-test.yaml"
MONITORING = ["--set", "prometheusRule.enabled=true", "--set", "podMonitor.enabled=true"]


def promtool(*args: str) -> None:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make promtool` installs it", pytrace=False)
    result = subprocess.run([found, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    promtool("check", "rules", str(RULES))


def test_the_rule_unit_tests_pass() -> None:
    promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_is_tested_firing_and_silent() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]  # fmt: skip
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fires == silent


def test_the_prometheus_rule_holds_the_files_rules() -> None:
    (rule,) = [doc for doc in render(*MONITORING) if doc["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def pod_monitors() -> dict[str, dict]:
    docs = render(*MONITORING)
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}


def test_the_pod_monitor_scrapes_the_model_pods() -> None:
    monitor = next(m for name, m in pod_monitors().items() if name.endswith("-models"))
    deployment = next(m for m in built(SAMPLES["zoo-cpu"]) if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert ports[endpoint["port"]] == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"]
    assert endpoint["honorLabels"] is True  # keeps the servers' own `endpoint` label
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_a_pod_monitor_scrapes_the_operators_metrics_port() -> None:
    monitor = next(m for name, m in pod_monitors().items() if name.endswith("-operator"))
    docs = render(*MONITORING)
    (operator,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = operator["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert str(ports[endpoint["port"]]) == env["MODELZOO_OPERATOR_METRICS_PORT"] == "8081"


def test_the_not_ready_alert_reads_the_operators_own_gauges() -> None:
    rules = yaml.safe_load(RULES.read_text())
    (expr,) = [
        r["expr"] for g in rules["groups"] for r in g["rules"]
        if r.get("alert") == "ModelZooModelNotReady"
    ]  # fmt: skip
    used = set(re.findall(r"\b(modelzoo_operator_\w+)", expr))
    exported = {m.name for m in OperatorMetrics().registry.collect()}
    assert used == {"modelzoo_operator_model_replicas", "modelzoo_operator_model_ready_replicas"}
    assert used <= exported
    # Grouped by the gauges' own labels, so the alert names the model.
    gauge = OperatorMetrics().ready_replicas
    assert set(re.findall(r"by \(([^)]*)\)", expr)) == {", ".join(gauge._labelnames)}


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {doc["kind"] for doc in rendered("defaults")}
    assert not kinds & {"PrometheusRule", "PodMonitor"}

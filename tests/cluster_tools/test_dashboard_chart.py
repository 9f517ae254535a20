"""The chart ships the Grafana dashboard (files/dashboard.json) as a ConfigMap for Grafana's
sidecar, only when asked. That its queries return data is tests/e2e/test_dashboard.py's."""

from __future__ import annotations

import json

import pytest

from tests.cluster_tools.test_chart_hardening import CHART, render, rendered

pytestmark = pytest.mark.cluster
DASHBOARD = CHART / "files" / "dashboard.json"


def dashboards(docs) -> list[dict]:
    """The dashboard ConfigMap(s) among rendered documents (release `t`)."""
    return [
        d for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-modelzoo-dashboard"
    ]  # fmt: skip


def test_the_config_map_holds_exactly_the_dashboard_file() -> None:
    (config_map,) = dashboards(render("--set", "dashboard.enabled=true"))
    (content,) = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "ops"


def test_labels_and_a_folder_annotation_are_the_users() -> None:
    (config_map,) = dashboards(render(
        "--set", "dashboard.enabled=true",
        "--set", "dashboard.labels.team=ml",
        "--set", "dashboard.annotations.grafana_folder=ModelZoo",
    ))  # fmt: skip
    assert config_map["metadata"]["labels"]["team"] == "ml"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "ModelZoo"}


def test_the_dashboard_is_off_by_default() -> None:
    assert not dashboards(rendered("defaults"))

"""The Grafana dashboard's queries (charts/modelzoo/files/dashboard.json) as PromQL that
a plain Prometheus runs: its template variables replaced by values."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[1] / "charts" / "modelzoo" / "files" / "dashboard.json"
# $name, ${name} and ${name:format} (Grafana's variable syntaxes in queries)
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Target:
    panel: str
    ref: str
    expr: str
    legend: str


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def targets(dashboard: Mapping) -> list[Target]:
    """Every query of every panel, rows' nested (collapsed) panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", ())]:
            for target in inner.get("targets", ()):
                found.append(
                    Target(inner["title"], target["refId"], target["expr"], target["legendFormat"])
                )
    return found


def by_panel(dashboard: Mapping) -> dict[str, list[Target]]:
    panels: dict[str, list[Target]] = {}
    for target in targets(dashboard):
        panels.setdefault(target.panel, []).append(target)
    return panels


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with every variable replaced; one without a value raises KeyError, so a
    query using a variable the caller did not expect cannot pass unnoticed."""
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' label value."""
    return LABEL.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()

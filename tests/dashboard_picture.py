"""`make dashboard-picture`: the Grafana dashboard's main panels, plotted from a real run.

Starts what tests/e2e/test_dashboard.py starts (a server, the operator on a fresh test
cluster, Prometheus), drives varying bounded load for about a minute and a half (scaling
the zoo on the way), then asks Prometheus for each panel's series with the dashboard's
own query strings and draws them with matplotlib (Grafana is not available here).

    python -m tests.dashboard_picture --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests import dashboard_queries
from tests.dashboard_stack import MODEL, apply_zoo, observed, variables
from tests.dashboard_traffic import background_load
from tests.prometheus_process import MISSING, PROMETHEUS, Prometheus

NAMESPACE = "dashboard"
# (clients, seconds): light, busy, past the in-flight limit (429s), light again
PHASES = ((1, 15), (4, 20), (12, 20), (2, 15), (6, 20))
SCALE_AT_PHASE, SCALED_REPLICAS = 2, 3
STEP = 2.0  # seconds between points
PANELS = (
    "Requests by code",
    "Errors by code",
    "Request latency",
    "Queue and graph time",
    "Batch size",
    "In-flight vs admission limit",
    "Replicas",
    "Reconciles",
)

Series = list[tuple[str, list[float], list[float]]]  # (legend, seconds from start, values)


def collect(prometheus: Prometheus, start: float, end: float) -> dict[str, Series]:
    """Each panel's series over [start, end], queried with the dashboard's expressions."""
    panels = dashboard_queries.by_panel(dashboard_queries.load())
    values = variables(MODEL)
    out: dict[str, Series] = {}
    for title in PANELS:
        out[title] = [
            (
                dashboard_queries.legend(target.legend, series["metric"]),
                [float(t) - start for t, _ in series["values"]],
                [float(v) for _, v in series["values"]],
            )
            for target in panels[title]
            for series in prometheus.query_range(
                dashboard_queries.substitute(target.expr, values), start, end, STEP
            )
        ]
    return out


def plot(panels: dict[str, Series], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(2, 4, figsize=(16, 6.5), sharex=True)
    for axis, (title, series) in zip(axes.flat, panels.items(), strict=True):
        for name, seconds, values in series:
            axis.plot(seconds, values, label=name, linewidth=1.2)
        axis.set_title(title, fontsize=10)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if series:
            axis.legend(fontsize=7, loc="upper left")
    for axis in axes[-1]:
        axis.set_xlabel("seconds", fontsize=8)
    figure.suptitle(f"ModelZoo dashboard, model={MODEL} (queries from dashboard.json)", fontsize=11)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)


def run(out: Path) -> None:
    from modelzoo_models import run_recipes, store
    from tests.cluster import harness

    zoo_dir = run_recipes.build(store.model_dir()).parent
    with (
        tempfile.TemporaryDirectory(prefix="modelzoo-dashboard-") as tmp,
        harness.session() as cluster,
    ):
        cluster.kubectl("create", "namespace", NAMESPACE)
        with observed(cluster, NAMESPACE, zoo_dir, Path(tmp)) as stack:
            start = time.time()
            for index, (clients, seconds) in enumerate(PHASES):
                if index == SCALE_AT_PHASE:
                    apply_zoo(cluster, NAMESPACE, replicas=SCALED_REPLICAS)
                print(f"load: {clients} clients for {seconds} s", flush=True)
                with background_load(stack.server_url, MODEL, clients) as statuses:
                    time.sleep(seconds)
                print(f"  answers: {dict(statuses)}", flush=True)
            time.sleep(5)  # the last scrape and rate window
            panels = collect(stack.prometheus, start, time.time())
    plot(panels, out)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args(argv)
    if not PROMETHEUS.exists():
        raise SystemExit(MISSING)
    run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

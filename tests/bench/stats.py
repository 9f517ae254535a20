"""One measured cell and its figures (throughput, latency percentiles)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass
class Cell:
    """One measurement: `images` done in `seconds`, with one latency per request."""

    model: str
    path: str  # "raw graph", "in-process", "served /infer", "served V2", "served gRPC", ...
    batching: str  # "on", "off" or "n/a"
    concurrency: int  # concurrent clients (1 for the raw graph)
    batch: int  # images per request (the raw graph's batch size; 1 elsewhere)
    requests: int  # completed requests (calls, for the raw graph)
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False, default_factory=list)  # seconds, per request
    capped: bool = False  # stopped by the per-cell time cap before its request count
    planned: int = 0  # the cell's fixed request count
    mean_batch: float = 1.0  # images per graph call (the server's, from its /metrics)
    client_cpu_seconds: float = math.nan  # the bench process's CPU time over the cell
    # The server's own means over the cell, from its /metrics: its inference handler's
    # time and its model call's (ms); NaN where no server ran.
    handler_ms: float = math.nan
    model_call_ms: float = math.nan
    baseline: Cell | None = field(default=None, repr=False)
    baseline_label: str = ""

    @property
    def images(self) -> int:
        return self.requests * self.batch

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(sorted(self.latencies), q) * 1000

    @property
    def label(self) -> str:
        extra = f", batching {self.batching}" if self.batching != "n/a" else ""
        if self.path == "raw graph":
            return f"{self.model} raw graph, batch {self.batch}"
        return f"{self.model} {self.path}{extra}, concurrency {self.concurrency}"

    def ratio(self, metric: str) -> float:
        """This cell's metric divided by its baseline's (NaN without a baseline)."""
        if self.baseline is None:
            return math.nan
        mine, theirs = self.metric(metric), self.baseline.metric(metric)
        return mine / theirs if theirs and not math.isnan(theirs) else math.nan

    def metric(self, metric: str) -> float:
        if metric == "images/s":
            return self.images_per_s
        return self.p(float(metric.lstrip("p")))

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "path": self.path,
            "batching": self.batching,
            "concurrency": self.concurrency,
            "batch": self.batch,
            "requests": self.requests,
            "planned": self.planned,
            "errors": self.errors,
            "seconds": round(self.seconds, 4),
            "images_per_s": round(self.images_per_s, 3),
            "p50_ms": round(self.p(50), 3),
            "p90_ms": round(self.p(90), 3),
            "p99_ms": round(self.p(99), 3),
            "capped": self.capped,
            "mean_batch": round(self.mean_batch, 2),
            "handler_ms": None if math.isnan(self.handler_ms) else round(self.handler_ms, 3),
            "model_call_ms": (
                None if math.isnan(self.model_call_ms) else round(self.model_call_ms, 3)
            ),
            "client_cpu_s": round(self.client_cpu_seconds, 4),
            "baseline": self.baseline_label,
        }

"""Prometheus metrics; the names are a contract for dashboards and autoscaling."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 100 µs … 10 s, roughly ×2 per step: LiteRT answers small models in under a millisecond.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """All metrics of one server, in their own registry (tests get a fresh one each)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # `protocol` is rest or grpc; for grpc, `endpoint` is the method's full name
        # (/inference.GRPCInferenceService/ModelInfer) and `code` its status code's name (OK).
        self.requests = Counter(
            "modelzoo_requests",
            "Requests answered, by protocol, endpoint and status code.",
            ["model", "protocol", "endpoint", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "modelzoo_request_duration_seconds",
            "Time from request received to response ready.",
            ["model", "protocol", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "modelzoo_inference_duration_seconds",
            "Time the graph ran, per call (a batch counts once).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "modelzoo_queue_duration_seconds",
            "Time a request waited before its graph call started.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelzoo_batch_size",
            "Requests per graph call.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "modelzoo_inflight_requests",
            "Inference requests being handled now.",
            ["model"],
            registry=r,
        )
        # The admission limit (--max-inflight), so dashboards and alerts can set
        # modelzoo_inflight_requests against it.
        self.max_inflight = Gauge(
            "modelzoo_max_inflight_requests",
            "Inference requests admitted at once; more get 429.",
            ["model"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "modelzoo_model_load_seconds",
            "Time to check, import and warm up the model.",
            ["model"],
            registry=r,
        )
        self.info = Gauge(
            "modelzoo_model_info",
            "The served model (value is 1).",
            ["model", "task", "sha256", "runtime"],  # runtime: litert or tensorflow
            registry=r,
        )

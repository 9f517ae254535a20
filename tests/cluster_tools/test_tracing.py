"""Tracing on, end to end: a real `modelzoo-server` exports its spans over OTLP (once per
protocol, http/protobuf and grpc) to a real OpenTelemetry Collector (tests/otel_collector.py)
that writes them to a file. The client's `traceparent` (an HTTP header, gRPC metadata) is
continued: each request's server span is in the client's trace, under the client's span,
with the request's stages as its children; each graph call is a `batch` span linked to
every request it served, with the `graph` run under it. /metrics in OpenMetrics carries
exemplars with the client's trace id, and the JSON access log the trace and span ids."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests import photos
from tests.cluster import harness
from tests.otel_collector import Collector, Span, otel_collector
from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.cluster

MODEL = "emotion"  # small (64×64 grey input), batchable
SERVER_KIND = 2  # OTLP's SPAN_KIND_SERVER
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
ENDPOINTS = {"infer": "/infer", "v2": "/v2/models/{name}/infer", "grpc": GRPC_INFER}
STAGES = {
    "infer": ["admission", "decode", "encode", "postprocess", "preprocess", "queue"],
    "v2": ["admission", "decode", "encode", "queue"],
    "grpc": ["admission", "decode", "encode", "queue"],
}
TENSOR = np.full((1, 64, 64, 1), 0.5, dtype=np.float32)
INPUT = {"name": "input", "datatype": "FP32", "shape": [1, 64, 64, 1], "data": [0.5] * 4096}
V2_BODY = json.dumps({"inputs": [INPUT]}).encode()


@dataclass(frozen=True)
class Sent:
    kind: str  # infer | v2 | grpc
    request_id: str
    client_span: str  # the span id of the client's traceparent


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> Iterator[Collector]:
    binary = harness.ensure_binaries() / "otelcol"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run tests/cluster/build.sh", pytrace=False)
    with otel_collector(binary.parent, tmp_path_factory.mktemp("otelcol")) as running:
        yield running


def _send(server: RunningServer, trace_id: str, sent: Sent) -> None:
    traceparent = f"00-{trace_id}-{sent.client_span}-01"
    if sent.kind == "grpc":
        assert server.grpc_address is not None
        client = triton_grpc.InferenceServerClient(server.grpc_address)
        try:
            tensor = triton_grpc.InferInput("input", list(TENSOR.shape), "FP32")
            tensor.set_data_from_numpy(TENSOR)
            headers = {"traceparent": traceparent, "x-request-id": sent.request_id}
            result = client.infer(MODEL, [tensor], headers=headers)
            assert result.as_numpy("probabilities").shape == (1, 7)
        finally:
            client.close()
        return
    headers = {"traceparent": traceparent, "X-Request-Id": sent.request_id}
    if sent.kind == "infer":
        url, body = f"{server.url}/infer", photos.encode_jpeg(photos.chelsea())
        headers["Content-Type"] = "image/jpeg"
    else:
        url, body = f"{server.url}/v2/models/{MODEL}/infer", V2_BODY
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def _metrics(server: RunningServer) -> str:
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        return response.read().decode()


def _batched_several(metrics: str) -> bool:
    """Whether some graph call of the model ran more than one row (modelzoo_batch_size)."""
    count = re.search(r"^modelzoo_batch_size_count\{[^}]*\} (\S+)$", metrics, re.M)
    ones = re.search(r'^modelzoo_batch_size_bucket\{le="1\.0"[^}]*\} (\S+)', metrics, re.M)
    assert count and ones, metrics
    return float(count.group(1)) > float(ones.group(1))


def _exemplars(metrics: str, histogram: str) -> list[tuple[str, dict[str, str]]]:
    """(the bucket's labels, the exemplar's labels) of each bucket that has one."""
    found = []
    for line in metrics.splitlines():
        match = re.match(rf"{histogram}_bucket\{{(.*?)\}} \S+ # \{{(.*?)\}}", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found.append((match.group(1), labels))
    return found


def _wait_for(collector: Collector, wanted, timeout: float = 60.0) -> list[Span]:
    """The collector's spans once `wanted(spans)` holds (the exporter writes every second)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = collector.spans()
        if wanted(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_continue_the_clients_trace(
    collector: Collector, zoo_dir: Path, tmp_path: Path, protocol: str
) -> None:
    service = f"modelzoo-test-{protocol.replace('/', '-')}"
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    args = ["--zoo", MODEL, "--model-dir", str(zoo_dir), "--access-log", "json"]
    # TensorFlow: a model on LiteRT runs each request alone, and batch spans are wanted.
    args += ["--runtime", "tensorflow", "--max-batch-size", "8", "--max-delay-ms", "200"]
    trace_id = os.urandom(16).hex()
    sent: list[Sent] = []
    log = tmp_path / "server.log"
    with run_server(args, log, env=env) as server, ThreadPoolExecutor(12) as clients:
        # Bursts of concurrent requests until the batcher has put several in one call.
        for burst in range(5):
            wave = [
                Sent(kind, f"{service}-{burst}-{kind}-{i}", os.urandom(8).hex())
                for kind in ("infer", "v2", "grpc")
                for i in range(4)
            ]
            list(clients.map(lambda s: _send(server, trace_id, s), wave))
            sent += wave
            metrics = _metrics(server)
            if _batched_several(metrics):
                break
        runtime = re.search(r'^modelzoo_model_info\{[^}]*runtime="(\w+)"', metrics, re.M)
        assert runtime, metrics
    # Stopped: the server has exported what it had queued.
    ours = {s.client_span for s in sent}

    def complete(spans: list[Span]) -> bool:
        """Every request's server span is there, and a batch span linking it."""
        serving = {s.span_id for s in spans if s.trace_id == trace_id and s.parent_span_id in ours}
        linked = {i for s in spans if s.name == "batch" for t, i in s.links if t == trace_id}
        return len(serving) == len(ours) and serving <= linked

    spans = _wait_for(collector, complete)
    spans = [span for span in spans if span.service == service]
    by_parent: dict[str, list[Span]] = {}
    for span in spans:
        by_parent.setdefault(span.parent_span_id, []).append(span)
    common = {"modelzoo.model": MODEL, "modelzoo.runtime": runtime.group(1)}
    batches = [span for span in spans if span.name == "batch"]
    server_spans: dict[str, Span] = {}

    for request in sent:
        # The server span: in the client's trace, under the client's span.
        found = [s for s in by_parent.get(request.client_span, []) if s.trace_id == trace_id]
        assert len(found) == 1, f"{len(found)} server spans for {request}"
        span = found[0]
        assert span.kind == SERVER_KIND and span.status_code != 2, span
        assert span.attributes["modelzoo.model"] == MODEL
        assert span.attributes["modelzoo.request_id"] == request.request_id
        if request.kind == "grpc":
            assert span.name == GRPC_INFER and span.attributes["rpc.grpc.status_code"] == 0
        else:
            status = span.attributes.get("http.response.status_code")
            assert span.attributes.get("http.status_code", status) == 200, span
        server_spans[request.request_id] = span

        # Its stages, each once, with the model's attributes.
        stages = sorted(by_parent.get(span.span_id, []), key=lambda s: s.name)
        assert [s.name for s in stages] == STAGES[request.kind], stages
        for stage in stages:
            assert stage.trace_id == trace_id
            assert {k: stage.attributes[k] for k in common} == common, stage
        queue = next(s for s in stages if s.name == "queue")

        # One batch span serves it: a trace of its own, linked to this request's span,
        # with the graph run under it.
        found = [b for b in batches if (trace_id, span.span_id) in b.links]
        assert len(found) == 1, f"{len(found)} batch spans link {request}"
        batch = found[0]
        assert batch.parent_span_id == "" and batch.trace_id != trace_id
        assert {k: batch.attributes[k] for k in common} == common, batch
        assert batch.attributes["modelzoo.batch.requests"] == len(batch.links)
        assert batch.attributes["modelzoo.batch_size"] == queue.attributes["modelzoo.batch_size"]
        (graph,) = by_parent[batch.span_id]
        assert graph.name == "graph" and graph.trace_id == batch.trace_id
        assert {k: graph.attributes[k] for k in common} == common, graph

    linked = [b for b in batches if any(t == trace_id for t, _ in b.links)]
    assert max(len(b.links) for b in linked) >= 2, "no batch served several requests"

    # Exemplars: each endpoint's latency points at one of these requests' server spans,
    # the queue wait at this trace, the graph time at a batch's trace.
    ids = {(trace_id, s.span_id) for s in server_spans.values()}
    for kind, route in ENDPOINTS.items():
        latency = _exemplars(metrics, "modelzoo_request_duration_seconds")
        exemplars = [e for labels, e in latency if f'endpoint="{route}"' in labels]
        assert exemplars, f"no exemplar for {kind}"
        assert all((e["trace_id"], e["span_id"]) in ids for e in exemplars), exemplars
    queued = _exemplars(metrics, "modelzoo_queue_duration_seconds")
    assert queued and all(e["trace_id"] == trace_id for _, e in queued), queued
    graphed = _exemplars(metrics, "modelzoo_inference_duration_seconds")
    batch_traces = {b.trace_id for b in batches}
    assert graphed and all(e["trace_id"] in batch_traces for _, e in graphed), graphed

    # The access log line of each request names its trace and server span.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    logged = {line["request_id"]: line for line in lines}
    for request_id, span in server_spans.items():
        entry = logged[request_id]
        assert (entry["trace_id"], entry["span_id"]) == (trace_id, span.span_id), entry

"""Tracing is off without an OTLP endpoint: the server sets nothing up (no SDK imported,
no exporter thread, the aiohttp application not instrumented, a no-op tracer) and answers
as before, a client's `traceparent` notwithstanding: no trace ids in the access log, no
exemplars in /metrics. (tests/cluster_tools/test_tracing.py has tracing on.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NO_OTEL = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
INPUT = {"name": "input", "datatype": "FP32", "shape": [1, 64, 64, 1], "data": [0.5] * 4096}
V2_BODY = json.dumps({"inputs": [INPUT]}).encode()

# What `modelzoo-server` does up to serving, in a fresh interpreter (this one may have
# loaded the SDK for another test), then one request with a traceparent.
SETS_UP_NOTHING = """
import asyncio, json, sys, threading
from concurrent.futures import ThreadPoolExecutor
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from modelzoo_server import tracing
from modelzoo_server.__main__ import build_model
from modelzoo_server.app import create_app
from modelzoo_server.metrics import Metrics
from modelzoo_server.settings import parse_settings

settings = parse_settings(sys.argv[2:])
otel = tracing.start(settings.tracing)
app = create_app(settings, build_model(settings, Metrics(), ThreadPoolExecutor(1), otel.tracer))

async def infer():
    async with TestClient(TestServer(app)) as client:
        headers = {"traceparent": sys.argv[1]}
        response = await client.post("/v2/models/emotion/infer", data=sys.stdin.buffer.read(),
                                     headers=headers)
        return response.status

status = asyncio.run(infer())
print(json.dumps({
    "status": status,
    "tracing_settings": repr(settings.tracing),
    "tracer": type(otel.tracer).__name__,
    "plain_application": type(app) is web.Application,
    "sdk_modules": sorted(m for m in sys.modules if m.startswith(
        ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation"))),
    "threads": sorted(t.name for t in threading.enumerate()),
}))
"""


def test_without_an_endpoint_nothing_is_set_up(zoo_dir: Path) -> None:
    # The batcher's path too: batching runs on TensorFlow only.
    argv = ["--zoo", "emotion", "--model-dir", str(zoo_dir), "--max-batch-size", "4"]
    argv += ["--runtime", "tensorflow"]
    done = subprocess.run(
        [sys.executable, "-c", SETS_UP_NOTHING, TRACEPARENT, *argv],
        input=V2_BODY,
        capture_output=True,
        env=NO_OTEL,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert report["status"] == 200
    assert report["tracing_settings"] == "None"
    assert report["tracer"] == "NoOpTracer"
    assert report["plain_application"], "the aiohttp instrumentation wrapped the application"
    assert report["sdk_modules"] == []
    assert not [name for name in report["threads"] if name.startswith("Otel")], report["threads"]


@pytest.fixture(scope="module")
def server(zoo_dir: Path, tmp_path_factory) -> Iterator[tuple[RunningServer, Path]]:
    log = tmp_path_factory.mktemp("tracing-off") / "server.log"
    args = ["--zoo", "emotion", "--model-dir", str(zoo_dir), "--access-log", "json"]
    # run_server adds to this environment: blank out any OTEL_ variable it has.
    cleared = {k: "" for k in os.environ if k.startswith("OTEL_")}
    args += ["--runtime", "tensorflow", "--max-batch-size", "4"]  # batching: TensorFlow only
    with run_server(args, log, env=cleared) as running:
        yield running, log


def _get(url: str, headers: dict[str, str]) -> tuple[str, str]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_a_traced_client_gets_the_same_answers_and_no_trace_ids(server) -> None:
    running, log = server
    request = urllib.request.Request(
        f"{running.url}/v2/models/emotion/infer",
        data=V2_BODY,
        headers={"traceparent": TRACEPARENT, "X-Request-Id": "off-1"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        assert json.loads(response.read())["outputs"]

    lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    entry = next(line for line in lines if line["request_id"] == "off-1")
    assert entry["status"] == "200" and entry["batch_size"] == 1
    assert "trace_id" not in entry and "span_id" not in entry

    # Prometheus' text format by default, as before; OpenMetrics when asked, no exemplar.
    content_type, text = _get(f"{running.url}/metrics", {})
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'modelzoo_request_duration_seconds_count{endpoint="/v2/models/{name}/infer"' in text
    content_type, text = _get(
        f"{running.url}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert "modelzoo_request_duration_seconds_bucket" in text and " # {" not in text

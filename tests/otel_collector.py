"""The tests' OTLP receiver (tests/cluster/go/otelcol, built with the cluster binaries): a
real OpenTelemetry Collector receiving OTLP over gRPC and HTTP on free loopback ports and
writing every span it gets to a file, as OTLP JSON lines, which `spans()` reads back."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, stop


@dataclass(frozen=True)
class Span:
    """One exported span, its ids in hex as OTLP JSON writes them."""

    service: str  # the exporting resource's service.name
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int  # OTLP's SpanKind: 2 is SERVER
    attributes: dict[str, object]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each linked span
    status_code: int  # OTLP's StatusCode: 0 unset, 1 ok, 2 error


def _value(value: dict) -> object:
    """An OTLP JSON AnyValue: 64-bit integers come as strings."""
    (kind, raw), *_ = value.items()
    return int(raw) if kind == "intValue" else raw


def _attributes(items: list[dict]) -> dict[str, object]:
    return {item["key"]: _value(item["value"]) for item in items}


@dataclass(frozen=True)
class Collector:
    grpc_endpoint: str  # http://127.0.0.1:PORT, what OTEL_EXPORTER_OTLP_ENDPOINT takes
    http_endpoint: str
    spans_file: Path
    pid: int  # the collector's process (the bench reads its CPU time)

    def spans(self) -> list[Span]:
        """Every span written so far (the exporter flushes about once a second)."""
        if not self.spans_file.exists():
            return []
        found = []
        for line in self.spans_file.read_text().splitlines():
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", []):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        found.append(
                            Span(
                                service=str(resource.get("service.name")),
                                trace_id=span["traceId"],
                                span_id=span["spanId"],
                                parent_span_id=span.get("parentSpanId", ""),
                                name=span["name"],
                                kind=span.get("kind", 0),
                                attributes=_attributes(span.get("attributes", [])),
                                links=tuple(
                                    (link["traceId"], link["spanId"])
                                    for link in span.get("links", [])
                                ),
                                status_code=span.get("status", {}).get("code", 0),
                            )
                        )
        return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def otel_collector(bin_dir: Path, workdir: Path, timeout: float = 60.0) -> Iterator[Collector]:
    """The collector on free loopback ports, stopped on exit (its log in `workdir`)."""
    binary = bin_dir / "otelcol"
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing: run tests/cluster/build.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    spans_file = workdir / "spans.jsonl"
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
            }
        },
        "exporters": {"file": {"path": str(spans_file), "format": "json"}},
        "service": {
            # The collector's own metrics would listen on :8888: none.
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
        },
    }
    config_file = workdir / "config.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "otelcol.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(binary), f"--config=file:{config_file}"], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while not (_listening(grpc_port) and _listening(http_port)):
            if process.poll() is not None:
                raise RuntimeError(f"otelcol exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"otelcol not listening after {timeout}s:\n{log.read_text()}")
            time.sleep(0.1)
        grpc_url, http_url = f"http://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
        yield Collector(grpc_url, http_url, spans_file, process.pid)
    finally:
        stop(process, grace=10)

"""OpenTelemetry tracing: off unless the standard OTLP endpoint variables are set.

Off, nothing is set up: the tracer is OpenTelemetry's no-op one, the SDK is not even
imported and no exporter thread runs, so the spans the server opens cost a few calls.
On, the SDK exports over OTLP (http/protobuf or grpc) from a batch processor thread; the
aiohttp and gRPC instrumentations open each request's server span, continuing the
client's W3C `traceparent`, and the server's own spans cover the stages inside it:
admission, decode, preprocess, queue, batch (one per graph call, its own trace, linked to
every request it served), graph, postprocess and encode.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from opentelemetry import context, trace
from opentelemetry.trace import Link, Span, SpanContext, Tracer

if TYPE_CHECKING:
    import grpc
    from opentelemetry.sdk.trace import TracerProvider

HTTP_PROTOBUF, GRPC = "http/protobuf", "grpc"
PROTOCOLS = (HTTP_PROTOBUF, GRPC)
DEFAULT_SERVICE = "modelzoo-server"

# Span attributes.
MODEL = "modelzoo.model"
RUNTIME = "modelzoo.runtime"
BATCH_SIZE = "modelzoo.batch_size"  # rows in the graph call
BATCH_REQUESTS = "modelzoo.batch.requests"  # requests the graph call served
REQUEST_ID = "modelzoo.request_id"  # the X-Request-Id the access log has
INFLIGHT = "modelzoo.inflight"  # requests admitted when this one asked

NO_TRACER: Tracer = trace.NoOpTracer()
T = TypeVar("T")


@dataclass(frozen=True)
class TracingSettings:
    endpoint: str  # http/protobuf: the traces URL; grpc: the collector's URL
    protocol: str  # HTTP_PROTOBUF or GRPC
    service_name: str


def settings_from_env(env: Mapping[str, str]) -> TracingSettings | None:
    """Tracing's settings from the standard OTEL_* variables; None (off) without an OTLP
    endpoint or with OTEL_SDK_DISABLED=true. ValueError for a protocol we cannot send."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not traces and not base:
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or HTTP_PROTOBUF
    )
    if protocol not in PROTOCOLS:
        choices = " or ".join(PROTOCOLS)
        raise ValueError(f"OTLP protocol {protocol!r} is not supported: use {choices}")
    if not traces:
        # Over HTTP the base endpoint gets the signal's path; gRPC has one for every signal.
        traces = f"{base.rstrip('/')}/v1/traces" if protocol == HTTP_PROTOBUF else base
    return TracingSettings(traces, protocol, _service_name(env))


def _service_name(env: Mapping[str, str]) -> str:
    """OTEL_SERVICE_NAME, else a service.name in OTEL_RESOURCE_ATTRIBUTES (as the SDK
    ranks them), else ours rather than the SDK's `unknown_service`."""
    if env.get("OTEL_SERVICE_NAME", "").strip():
        return env["OTEL_SERVICE_NAME"].strip()
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return DEFAULT_SERVICE


class Tracing:
    """What the server traces with: `tracer` for its own spans, the gRPC interceptors,
    and `shutdown()`, which exports what is left."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        self._provider = provider

    def grpc_interceptors(
        self, traced: Callable[[grpc.HandlerCallDetails], bool]
    ) -> list[grpc.aio.ServerInterceptor]:
        """The instrumentation's server interceptor for the calls `traced` accepts."""
        if self._provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return [aio_server_interceptor(tracer_provider=self._provider, filter_=traced)]

    def shutdown(self) -> None:
        if self._provider is None:
            return
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().uninstrument()
        self._provider.shutdown()  # flushes the spans still queued


OFF = Tracing(NO_TRACER)


def start(settings: TracingSettings | None) -> Tracing:
    """Set up the SDK and the aiohttp instrumentation (before the app is created: the
    instrumentation adds its middleware to every `web.Application` made from then on)."""
    if settings is None:
        return OFF
    # Imported here so that with tracing off the SDK is never loaded.
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if settings.protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; the sampler comes from OTEL_TRACES_SAMPLER
    # (default: parent-based, always on), the batching from OTEL_BSP_*, as the SDK reads them.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    return Tracing(provider.get_tracer("modelzoo_server"), provider)


def mark_request(model: str, request_id: str) -> tuple[str, str] | None:
    """Put the model and the request id on the current (server) span; its ids as
    `span_ids` gives them, for the access log."""
    span = trace.get_current_span()
    span.set_attributes({MODEL: model, REQUEST_ID: request_id})
    return span_ids(span.get_span_context())


def span_ids(span_context: SpanContext | None = None) -> tuple[str, str] | None:
    """(trace id, span id) in hex of `span_context` (default: the current span's) when it
    is sampled, so exported; else None (always None with tracing off)."""
    if span_context is None:
        span_context = trace.get_current_span().get_span_context()
    if not span_context.trace_flags.sampled:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def exemplar(span_context: SpanContext | None = None) -> dict[str, str] | None:
    """A histogram exemplar pointing at `span_context` (default: the current span)."""
    ids = span_ids(span_context)
    return None if ids is None else {"trace_id": ids[0], "span_id": ids[1]}


def in_context(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """`fn(*args)` in a copy of the current context, for an executor thread:
    `run_in_executor` does not carry context variables, so spans opened there would
    lose their parent."""
    return functools.partial(contextvars.copy_context().run, fn, *args)


def stage(
    tracer: Tracer, name: str, attributes: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Span]:
    """A span as the current one while the block runs. With tracing off, a null context:
    the no-op tracer would still switch contexts (measured: 3.5 µs against 0.4 µs)."""
    if tracer is NO_TRACER:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return tracer.start_as_current_span(name, attributes=attributes)


def batch_span(
    tracer: Tracer, requests: Sequence[SpanContext], attributes: Mapping[str, Any]
) -> contextlib.AbstractContextManager[Span]:
    """The span of one graph call. It serves several requests, so it is not a child of
    one of them: it starts a trace of its own, linked to each request's span."""
    if tracer is NO_TRACER:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    links = [Link(request) for request in requests if request.is_valid]
    return tracer.start_as_current_span(
        "batch", context=context.Context(), links=links, attributes=attributes
    )

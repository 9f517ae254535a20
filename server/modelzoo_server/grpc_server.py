"""The gRPC side of the server: `inference.GRPCInferenceService` and the standard health
service on `--grpc-port`, in the same event loop as aiohttp.

Every call gets what a REST request gets from app.py's middlewares, in the same order:
the server span with tracing on (the OpenTelemetry interceptor, for the inference RPCs),
drain tracking, metrics and the access log around it (the request id comes from and goes
back in `x-request-id` metadata), the bearer token by the RPC's declared access, and
typed errors mapped to status codes in one place. A message over `--max-body-bytes` is
refused by gRPC itself (RESOURCE_EXHAUSTED) before it is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelzoo_server import tracing
from modelzoo_server.access_log import (
    METADATA_KEY,
    AccessLog,
    RequestRecord,
    recording,
    request_id,
)
from modelzoo_server.auth import TokenFile
from modelzoo_server.draining import Drain
from modelzoo_server.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ModelZooError,
    NotSupported,
    PayloadTooLarge,
    ServerOverloaded,
    Unauthorized,
    UnsupportedMediaType,
)
from modelzoo_server.grpc_service import SERVICE, UNIMPLEMENTED, InferenceService, Rpc
from modelzoo_server.model import ServedModel
from modelzoo_server.routes.access import Access, access_of
from modelzoo_server.settings import Settings

log = logging.getLogger("modelzoo.grpc")

STATUS_CODES: dict[type[ModelZooError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    NotSupported: grpc.StatusCode.UNIMPLEMENTED,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ServerOverloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
}


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class _Calls:
    """Turns each RPC into a gRPC method handler with the per-call duties above."""

    def __init__(
        self,
        model: ServedModel,
        drain: Drain,
        tokens: TokenFile | None,
        scope: str,
        access_log: AccessLog,
    ) -> None:
        self._model = model
        self._drain = drain
        self._tokens = tokens
        self._scope = scope
        self._access_log = access_log

    async def _answer(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        call: Callable[[], Awaitable[Message]],
        bytes_in: int = 0,
    ) -> Message:
        metrics, started = self._model.metrics, time.perf_counter()
        offered = dict(context.invocation_metadata() or ()).get(METADATA_KEY)
        record = RequestRecord(request_id(offered), self._model.name, "grpc", method)
        if ids := tracing.mark_request(self._model.name, record.request_id):
            record.trace_id, record.span_id = ids
        code, bytes_out = grpc.StatusCode.OK, 0
        # (details, trailing metadata) of an error answer, sent once metrics and the access
        # log have it: a client that has its answer finds it counted and logged.
        refusal: tuple[str, tuple[tuple[str, str], ...]] | None = None
        try:
            with self._drain.track(), recording(record):
                # Initial metadata, like an HTTP response header: sent whatever the outcome.
                await context.send_initial_metadata(((METADATA_KEY, record.request_id),))
                response = await call()
            bytes_out = response.ByteSize()
            return response
        except ModelZooError as exc:
            code = STATUS_CODES.get(type(exc), grpc.StatusCode.INTERNAL)
            retry = exc.headers.get("Retry-After")
            refusal = (str(exc), (("retry-after", retry),) if retry else ())
        except asyncio.CancelledError:  # the client went away or its deadline passed
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", method)
            refusal = ("internal error; the server logged the details", ())
        finally:
            name, elapsed = self._model.name, time.perf_counter() - started
            metrics.request_duration.labels(name, "grpc", method).observe(
                elapsed, exemplar=tracing.exemplar()
            )
            metrics.requests.labels(name, "grpc", method, code.name).inc()
            self._access_log.write(record, code.name, elapsed, bytes_in, bytes_out)
        await context.abort(code, *refusal)

    def _check_token(self, kind: Access, context: grpc.aio.ServicerContext) -> None:
        if self._tokens is None:
            return
        if kind is Access.INFERENCE or (self._scope == "all" and kind is Access.METADATA):
            metadata = dict(context.invocation_metadata() or ())
            self._tokens.check(metadata.get("authorization"))

    def implemented(self, name: str, rpc: Rpc) -> grpc.RpcMethodHandler:
        method, kind = f"/{SERVICE}/{name}", access_of(rpc.handler)

        async def handle(request: Message, context: grpc.aio.ServicerContext) -> Message:
            async def call() -> Message:
                self._check_token(kind, context)
                return await rpc.handler(request)

            return await self._answer(method, context, call, request.ByteSize())

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=rpc.request.FromString, response_serializer=_serialize
        )

    def unimplemented(self, name: str, reason: str) -> grpc.RpcMethodHandler:
        """Answered without reading the request, so streaming calls get it as well."""
        method = f"/{SERVICE}/{name}"

        async def call() -> Message:
            raise NotSupported(f"{name} is not implemented: {reason}")

        async def handle(requests: object, context: grpc.aio.ServicerContext) -> None:
            await self._answer(method, context, call)

        return grpc.stream_stream_rpc_method_handler(handle)


def traced(details: grpc.HandlerCallDetails) -> bool:
    """The calls that get a server span: the inference service's implemented RPCs. Not the
    health service (probes every few seconds), nor the unimplemented ones, whose streaming
    handlers the interceptor cannot wrap."""
    service, _, name = details.method.lstrip("/").partition("/")
    return service == SERVICE and name not in UNIMPLEMENTED


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """Started after the model is loaded (so health says SERVING from the first call),
    drained on SIGTERM next to the HTTP server."""

    def __init__(
        self,
        settings: Settings,
        model: ServedModel,
        drain: Drain,
        tokens: TokenFile | None,
        otel: tracing.Tracing = tracing.OFF,
    ) -> None:
        self.address = _address(settings.host, settings.grpc_port)
        self._stopping: asyncio.Task | None = None
        self._server = grpc.aio.server(
            interceptors=otel.grpc_interceptors(traced),
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                # gRPC shares a port taken by another process by default; fail instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        calls = _Calls(model, drain, tokens, settings.auth_scope, AccessLog(settings.access_log))
        handlers = {
            name: calls.implemented(name, rpc)
            for name, rpc in InferenceService(model, drain).rpcs().items()
        }
        handlers.update(
            {name: calls.unimplemented(name, why) for name, why in UNIMPLEMENTED.items()}
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        # Open under every auth scope: kubelet's gRPC probe sends no metadata, and the
        # answer tells no more than SERVING or NOT_SERVING.
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)

    async def start(self) -> None:
        try:
            self._server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise OSError(f"gRPC on {self.address}: {exc}") from exc
        await self._server.start()
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def begin_drain(self, seconds: float) -> None:
        """NOT_SERVING to every health watcher, then no new calls; those in flight go on
        for up to `seconds` (the caller waits for them with the HTTP requests)."""
        await self.health.enter_graceful_shutdown()
        self._stopping = asyncio.create_task(self._server.stop(seconds))

    async def stop(self) -> None:
        """End every call still open now (health watchers never end by themselves)."""
        await self._server.stop(None)
        if self._stopping is not None:
            await self._stopping

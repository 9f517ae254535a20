"""`create_app(settings, model)`: the aiohttp application around one loaded model."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web

from modelzoo_server import tracing
from modelzoo_server.access_log import HEADER, AccessLog, RequestRecord, recording, request_id
from modelzoo_server.appkeys import ACCESS_LOG, DRAIN, METRICS, MODEL, SETTINGS
from modelzoo_server.auth import TokenFile
from modelzoo_server.draining import Drain
from modelzoo_server.errors import ModelZooError
from modelzoo_server.model import ServedModel
from modelzoo_server.routes import metrics as metrics_routes
from modelzoo_server.routes import native, page, v2
from modelzoo_server.routes.access import Access, access_of
from modelzoo_server.settings import Settings

log = logging.getLogger("modelzoo.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": message}),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Typed errors → status codes, in one place; every error body is `{"error": ...}`."""
    try:
        return await handler(request)
    except ModelZooError as exc:
        return json_error(exc.status, str(exc), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 413:
            reason = f"request body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
        return json_error(
            exc.status,
            reason,
            {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error; the server logged the details")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics and the access log of each request, from one measurement; the request id
    goes back in X-Request-Id. With tracing on, this runs inside the request's server span
    (the aiohttp instrumentation's middleware comes first), whose ids the access log and
    the latency's exemplar take."""
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    model = request.app[MODEL].name
    metrics = request.app[METRICS]
    record = RequestRecord(request_id(request.headers.get(HEADER)), model, "rest", endpoint)
    if ids := tracing.mark_request(model, record.request_id):
        record.trace_id, record.span_id = ids
    started = time.perf_counter()
    with request.app[DRAIN].track(), recording(record):
        response = await handler(request)
    elapsed = time.perf_counter() - started
    metrics.request_duration.labels(model, "rest", endpoint).observe(
        elapsed, exemplar=tracing.exemplar()
    )
    metrics.requests.labels(model, "rest", endpoint, str(response.status)).inc()
    response.headers[HEADER] = record.request_id
    request.app[ACCESS_LOG].write(
        record,
        str(response.status),
        elapsed,
        request.content.total_bytes,
        response.content_length or 0,
    )
    return response


def auth_middleware(tokens: TokenFile, scope: str):
    """Bearer tokens by each route's declared access (routes/access.py); `scope` "all" also
    guards metadata, health and metrics. A path no route matches is metadata: a 404."""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        matched = request.match_info.route.resource is not None
        kind = access_of(request.match_info.handler) if matched else Access.METADATA
        if kind is Access.INFERENCE or (scope == "all" and kind is Access.METADATA):
            tokens.check(request.headers.get("Authorization"))
        return await handler(request)

    return check_token


async def _model_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[MODEL].start()
    yield
    await app[MODEL].stop()


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    # A keep-alive client learns from this answer to reconnect (to a pod that stays)
    # rather than find its connection closed under the next request.
    if request.app[DRAIN].draining:
        response.force_close()  # close after this answer
        # The headers are already prepared when this hook runs: say it in them too.
        response.headers[hdrs.CONNECTION] = "close"


def create_app(
    settings: Settings, model: ServedModel, tokens: TokenFile | None = None
) -> web.Application:
    middlewares = [metrics_middleware, errors_middleware]
    if tokens is not None:
        middlewares.append(auth_middleware(tokens, settings.auth_scope))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[SETTINGS] = settings
    app[MODEL] = model
    app[METRICS] = model.metrics
    app[DRAIN] = Drain()
    app[ACCESS_LOG] = AccessLog(settings.access_log)
    app.cleanup_ctx.append(_model_ctx)
    app.on_response_prepare.append(_close_when_draining)
    app.add_routes(page.routes)
    app.add_routes(native.routes)
    app.add_routes(v2.routes)
    app.add_routes(metrics_routes.routes)
    return app

"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelzoo_server.appkeys import METRICS
from modelzoo_server.routes.access import Access, access

routes = web.RouteTableDef()


@routes.get("/metrics")
@access(Access.METADATA)
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

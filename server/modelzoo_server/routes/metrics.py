"""GET /metrics: Prometheus text format, or OpenMetrics (which carries the latency
histograms' exemplars, the trace ids) for a scraper whose Accept header asks for it."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from modelzoo_server.appkeys import METRICS
from modelzoo_server.routes.access import Access, access

routes = web.RouteTableDef()


@routes.get("/metrics")
@access(Access.METADATA)
async def metrics(request: web.Request) -> web.Response:
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": content_type})

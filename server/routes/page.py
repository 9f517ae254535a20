"""GET /: the upload page (plain HTML and a little JS, no external assets)."""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from aiohttp import web

from modelzoo_server.appkeys import MODEL

routes = web.RouteTableDef()
_PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"


@cache
def _render(model: str, task: str) -> str:
    page = _PAGE.read_text(encoding="utf-8")
    return page.replace("{{model}}", html.escape(model)).replace("{{task}}", html.escape(task))


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    return web.Response(
        text=_render(model.name, model.entry.task),
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self'",
        },
    )

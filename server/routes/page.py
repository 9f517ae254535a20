"""GET /: the upload page (plain HTML and a little JS, no external assets)."""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from aiohttp import web

from modelzoo_server.appkeys import MODEL, SETTINGS

routes = web.RouteTableDef()
_PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"


@cache
def _render(model: str, task: str, auth: bool) -> str:
    page = _PAGE.read_text(encoding="utf-8")
    for key, value in (("model", model), ("task", task), ("auth", "on" if auth else "off")):
        page = page.replace("{{" + key + "}}", html.escape(value))
    return page


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    return web.Response(
        text=_render(model.name, model.entry.task, request.app[SETTINGS].token_file is not None),
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self'",
        },
    )

"""GET /: the upload page (plain HTML, a little JS, no external assets); GET /openapi.json."""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path

import yaml
from aiohttp import web

from modelzoo_server.appkeys import MODEL, SETTINGS
from modelzoo_server.routes.access import Access, access

routes = web.RouteTableDef()
_STATIC = Path(__file__).resolve().parent.parent / "static"
_PAGE = _STATIC / "index.html"
_OPENAPI = _STATIC / "openapi.yaml"  # kept as YAML in the repo, served as JSON


@cache
def _render(model: str, task: str, auth: bool) -> str:
    page = _PAGE.read_text(encoding="utf-8")
    for key, value in (("model", model), ("task", task), ("auth", "on" if auth else "off")):
        page = page.replace("{{" + key + "}}", html.escape(value))
    return page


@routes.get("/")
@access(Access.PUBLIC)
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


@cache
def _openapi() -> bytes:
    return json.dumps(yaml.safe_load(_OPENAPI.read_text(encoding="utf-8"))).encode()


@routes.get("/openapi.json")
@access(Access.METADATA)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi(), content_type="application/json")

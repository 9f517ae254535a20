"""POST /infer: the original demo's interface (multipart `image_file` or raw image bytes)."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from modelzoo_server.appkeys import MODEL, SETTINGS
from modelzoo_server.errors import InvalidInput, PayloadTooLarge
from modelzoo_server.routes.access import Access, access
from modelzoo_server.routes.body import read_body

routes = web.RouteTableDef()

# Option fields a form may carry next to the image; anything else is refused.
_MAX_FIELD_BYTES = 1024


async def _read_multipart(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    try:
        return await _parse_multipart(request, limit)
    except (HttpProcessingError, ValueError, AssertionError) as exc:
        # aiohttp's parser asserts and raises on broken framing: the client's fault.
        reason = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        raise InvalidInput(f"malformed multipart body: {reason}"[:300]) from exc


async def _parse_multipart(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    reader = await request.multipart()
    image: bytes | None = None
    fields: dict[str, str] = {}
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            raise InvalidInput("nested multipart bodies are not supported")
        if part.name == "image_file":
            image = bytes(await part.read(decode=True))
            if len(image) > limit:
                raise PayloadTooLarge(f"image is larger than {limit} bytes")
        elif part.name:
            value = await part.read(decode=True)
            if len(value) > _MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {part.name!r} is too long")
            fields[part.name] = value.decode("utf-8", "replace")
    if image is None:
        raise InvalidInput("multipart form has no 'image_file' field")
    return image, fields


def _wants_png(request: web.Request) -> bool:
    fmt = request.query.get("format", "").lower()
    if fmt:
        if fmt not in ("json", "png"):
            raise InvalidInput("format must be 'json' or 'png'")
        return fmt == "png"
    accept = request.headers.get("Accept", "")
    return "image/png" in accept and "application/json" not in accept


@routes.post("/infer")
@access(Access.INFERENCE)
async def infer(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    limit = request.app[SETTINGS].max_body_bytes
    want_png = _wants_png(request)
    with model.admit():
        if request.content_type.startswith("multipart/"):
            data, fields = await _read_multipart(request, limit)
        elif request.content_type == "application/x-www-form-urlencoded":
            raise InvalidInput(
                "a url-encoded form cannot carry a file: send a multipart form with an "
                "'image_file' field, or the raw image as the body"
            )
        else:
            data, fields = await read_body(request, limit), {}
        params = {**request.query, **fields}
        result, image = await model.infer_image(data, params)
        if want_png:
            png = await model.render_png(image, result)
            return web.Response(body=png, content_type="image/png")
    with model.span("encode"):
        return web.json_response(
            {
                "model": model.name,
                "task": model.entry.task,
                "image": {"width": image.width, "height": image.height},
                **result,
            }
        )

"""A request body read into one buffer of its announced size.

aiohttp's `request.read()` gathers the chunks into a growing bytearray and then copies
that into bytes: a tensor body crosses memory three times before numpy sees it. With a
Content-Length (and no Content-Encoding, which aiohttp undoes, so the length is not the
data's), the chunks go straight into a buffer of that size, once.
"""

from __future__ import annotations

from aiohttp import hdrs, web


async def read_body(request: web.Request, max_bytes: int) -> bytes | bytearray:
    """The whole body; 413 when it announces more than `max_bytes` (the app's
    client_max_size, which aiohttp's own read enforces), before reading any of it."""
    length = request.content_length
    if length is None or hdrs.CONTENT_ENCODING in request.headers:
        return await request.read()
    if length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=length)
    # As aiohttp's read does: buffer the whole body rather than pause the socket every
    # 128 KiB until this coroutine drains it.
    request.content.set_read_chunk_size(length)
    body = bytearray(length)
    view = memoryview(body)
    filled = 0
    while chunk := await request.content.readany():
        end = filled + len(chunk)
        if end > length:  # aiohttp stops at Content-Length; never past the buffer
            raise web.HTTPBadRequest(text="the body is longer than its Content-Length")
        view[filled:end] = chunk
        filled = end
    if filled != length:
        raise web.HTTPBadRequest(text="the body ended before its Content-Length")
    return body

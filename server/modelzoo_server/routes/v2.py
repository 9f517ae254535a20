"""Open Inference Protocol (KServe V2) REST, so tritonclient and KServe clients work as is."""

from __future__ import annotations

from aiohttp import web

from modelzoo_server.appkeys import DRAIN, MODEL, SETTINGS
from modelzoo_server.errors import InvalidInput, ModelNotReady
from modelzoo_server.model import ServedModel
from modelzoo_server.routes.access import Access, access
from modelzoo_server.routes.body import read_body
from modelzoo_server.v2_codec import (
    HEADER_LENGTH,
    MODEL_VERSION,
    PLATFORM,
    SERVER_VERSION,
    check_model,
    encode_infer_response,
    parse_infer_request,
)

routes = web.RouteTableDef()


def _model(request: web.Request) -> ServedModel:
    model = request.app[MODEL]
    check_model(model.name, request.match_info["name"], request.match_info.get("version"))
    return model


@routes.get("/v2")
@access(Access.METADATA)
async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response(
        {"name": "modelzoo", "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}
    )


@routes.get("/v2/health/live")
@access(Access.METADATA)
async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


@routes.get("/v2/health/ready")
@access(Access.METADATA)
async def ready(request: web.Request) -> web.Response:
    is_ready = request.app[MODEL].ready and not request.app[DRAIN].draining
    return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)


@routes.get("/v2/models/{name}")
@routes.get("/v2/models/{name}/versions/{version}")
@access(Access.METADATA)
async def model_metadata(request: web.Request) -> web.Response:
    model = _model(request)
    signature = model.entry.signature
    return web.json_response(
        {
            "name": model.name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORM,
            "inputs": [s.as_v2_metadata() for s in signature.inputs],
            "outputs": [s.as_v2_metadata() for s in signature.outputs],
            "parameters": {
                "task": model.entry.task,
                "sha256": model.entry.sha256 or "",
                "runtime": model.runtime,
                "batching": model.batching,
                **model.entry.info,
            },
        }
    )


@routes.get("/v2/models/{name}/ready")
@routes.get("/v2/models/{name}/versions/{version}/ready")
@access(Access.METADATA)
async def model_ready(request: web.Request) -> web.Response:
    model = _model(request)
    if not model.ready:
        raise ModelNotReady(f"model {model.name!r} is loading")
    return web.json_response({"name": model.name, "ready": True})


@routes.post("/v2/models/{name}/infer")
@routes.post("/v2/models/{name}/versions/{version}/infer")
@access(Access.INFERENCE)
async def infer(request: web.Request) -> web.Response:
    model = _model(request)
    raw_length = request.headers.get(HEADER_LENGTH)
    try:
        header_length = int(raw_length) if raw_length is not None else None
    except ValueError as exc:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer") from exc
    with model.admit():
        body = await read_body(request, request.app[SETTINGS].max_body_bytes)
        with model.span("decode"):
            infer_request = parse_infer_request(body, header_length)
        results = await model.run_tensors(infer_request.inputs)
    with model.span("encode"):
        payload, headers = encode_infer_response(model.name, infer_request, results)
    return web.Response(body=payload, headers=headers)

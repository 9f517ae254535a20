"""Open Inference Protocol (KServe V2) REST, so tritonclient and KServe clients work as is."""

from __future__ import annotations

import importlib.metadata

from aiohttp import web

from modelzoo_server.appkeys import DRAIN, MODEL
from modelzoo_server.errors import InvalidInput, ModelNotFound, ModelNotReady
from modelzoo_server.model import ServedModel
from modelzoo_server.routes.access import Access, access
from modelzoo_server.v2_codec import (
    HEADER_LENGTH,
    MODEL_VERSION,
    encode_infer_response,
    parse_infer_request,
)

routes = web.RouteTableDef()
# The server's own version, as installed (V2 server metadata).
SERVER_VERSION = importlib.metadata.version("modelzoo")


def _model(request: web.Request) -> ServedModel:
    model = request.app[MODEL]
    name = request.match_info["name"]
    version = request.match_info.get("version")
    if name != model.name or (version is not None and version != MODEL_VERSION):
        raise ModelNotFound(
            f"unknown model {name!r}"
            + (f" version {version!r}" if version else "")
            + f"; this server serves {model.name!r} version {MODEL_VERSION}"
        )
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
            "platform": "tensorflow_graphdef",
            "inputs": [s.as_v2_metadata() for s in signature.inputs],
            "outputs": [s.as_v2_metadata() for s in signature.outputs],
            "parameters": {
                "task": model.entry.task,
                "sha256": model.entry.sha256 or "",
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
        body = await request.read()
        infer_request = parse_infer_request(body, header_length)
        results = await model.run_tensors(infer_request.inputs)
    payload, headers = encode_infer_response(model.name, infer_request, results)
    return web.Response(body=payload, headers=headers)

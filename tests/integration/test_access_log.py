"""`--access-log json` on the real server: one JSON line per request on stdout, REST and
gRPC, under the id the client sent (`X-Request-Id`, gRPC `x-request-id`) or a fresh one,
which comes back in the same header. The sizes are checked against what the client sent
and received; the batch size against the rows a request carried through the batcher."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests import photos
from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.integration

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def server(zoo_dir: Path, tmp_path_factory) -> Iterator[tuple[RunningServer, Path]]:
    """mobilenet with batching, so the batch size comes from the batcher (on TensorFlow: a
    model on LiteRT runs each request alone)."""
    log = tmp_path_factory.mktemp("access-log") / "server.log"
    args = ["--zoo", "mobilenet", "--model-dir", str(zoo_dir), "--access-log", "json"]
    args += ["--runtime", "tensorflow"]
    with run_server([*args, "--max-batch-size", "8"], log) as running:
        yield running, log


def _entries(log: Path) -> dict[str, dict]:
    """The JSON lines the server wrote (stdout and stderr share the file), by request id."""
    entries = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    return {entry["request_id"]: entry for entry in entries}


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_rest_success_is_logged_under_the_clients_id(server) -> None:
    running, log = server
    jpeg = photos.grace_hopper_jpeg()
    headers = {"Content-Type": "image/jpeg", "X-Request-Id": "rest-ok-1"}
    status, response_headers, body = _post(f"{running.url}/infer", jpeg, headers)
    assert status == 200 and json.loads(body)["model"] == "mobilenet"
    assert response_headers["X-Request-Id"] == "rest-ok-1"

    entry = _entries(log)["rest-ok-1"]
    assert {k: entry[k] for k in ("model", "protocol", "route", "status", "batch_size")} == {
        "model": "mobilenet",
        "protocol": "rest",
        "route": "/infer",
        "status": "200",
        "batch_size": 1,
    }
    assert (entry["bytes_in"], entry["bytes_out"]) == (len(jpeg), len(body))
    assert 0 <= entry["queue_seconds"] <= entry["latency_seconds"]
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    # json replaces aiohttp's own line per request.
    assert "POST /infer HTTP/1.1" not in log.read_text()


@pytest.mark.parametrize("offered", [None, "x" * 129, "two words", "semi;colon"])
def test_a_4xx_gets_a_fresh_id_unless_the_clients_is_safe(server, offered) -> None:
    running, log = server
    headers = {"Content-Type": "image/jpeg"}
    if offered is not None:
        headers["X-Request-Id"] = offered
    status, response_headers, body = _post(f"{running.url}/infer", b"nope", headers)
    assert status == 415
    fresh = response_headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and fresh != offered

    entry = _entries(log)[fresh]
    assert (entry["route"], entry["status"]) == ("/infer", "415")
    assert (entry["bytes_in"], entry["bytes_out"]) == (4, len(body))
    assert entry["queue_seconds"] is None and entry["batch_size"] is None  # no graph call


def _infer_request(model: str, rows: int) -> service_pb2.ModelInferRequest:
    pixels = np.random.default_rng(3).uniform(-1, 1, (rows, 224, 224, 3)).astype(np.float32)
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=list(pixels.shape)
    )
    return service_pb2.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[pixels.tobytes()]
    )


def test_grpc_calls_are_logged_with_the_metadata_id(server) -> None:
    running, log = server
    assert running.grpc_address is not None
    request = _infer_request("mobilenet", rows=3)
    with grpc.insecure_channel(running.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response, call = stub.ModelInfer.with_call(
            request, metadata=(("x-request-id", "grpc-ok-1"),), timeout=60
        )
        assert ("x-request-id", "grpc-ok-1") in tuple(call.initial_metadata())
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(
                _infer_request("nope", rows=1),
                metadata=(("x-request-id", "grpc-err-1"),),
                timeout=60,
            )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "grpc-err-1") in tuple(refused.value.initial_metadata())

    entries = _entries(log)
    ok, refused_entry = entries["grpc-ok-1"], entries["grpc-err-1"]
    assert (ok["protocol"], ok["route"], ok["status"]) == ("grpc", INFER, "OK")
    assert ok["batch_size"] == 3  # the request's three rows, run as one batch
    assert (ok["bytes_in"], ok["bytes_out"]) == (request.ByteSize(), response.ByteSize())
    assert 0 <= ok["queue_seconds"] <= ok["latency_seconds"]
    assert (refused_entry["route"], refused_entry["status"]) == (INFER, "NOT_FOUND")
    assert refused_entry["batch_size"] is None and refused_entry["bytes_out"] == 0

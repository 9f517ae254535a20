"""The Open Inference Protocol over gRPC with the real `tritonclient.grpc`, against the real
server: the answers equal the REST V2 answers for the same tensors, errors carry the right
status code and a reason, and admission, auth, size limits and drain hold as for REST."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import signal
import socket
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelzoo_server.auth import TokenFile
from modelzoo_server.draining import Drain
from modelzoo_server.grpc_server import GrpcServer
from modelzoo_server.grpc_service import SERVICE, UNIMPLEMENTED
from modelzoo_server.model import ServedModel
from modelzoo_server.v2_codec import HEADER_LENGTH
from tests import photos
from tests.conftest import settings_for
from tests.servers import RunningServer, free_port, run_server

pytestmark = pytest.mark.integration

SECRET = "grpc-test-token"
ERROR = triton_grpc.InferenceServerException


def _mtcnn_tensors() -> dict[str, np.ndarray]:
    return {
        "input": np.ascontiguousarray(photos.grace_hopper()[..., ::-1], dtype=np.float32),
        "min_size": np.array(20.0, dtype=np.float32),
        "thresholds": np.array([0.6, 0.7, 0.8], dtype=np.float32),
        "factor": np.array(0.709, dtype=np.float32),
    }


def _mobilenet_tensors() -> dict[str, np.ndarray]:
    pixels = np.random.default_rng(7).uniform(-1, 1, (2, 224, 224, 3))
    return {"input": pixels.astype(np.float32)}


TENSORS = {"mtcnn": _mtcnn_tensors, "mobilenet": _mobilenet_tensors}


def _inputs(module, tensors: dict[str, np.ndarray]) -> list:
    """InferInputs of tritonclient.grpc or .http (the same API), binary/raw data."""
    inputs = []
    for name, value in tensors.items():
        tensor = module.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def _grpc(server: RunningServer) -> triton_grpc.InferenceServerClient:
    assert server.grpc_address is not None
    return triton_grpc.InferenceServerClient(server.grpc_address)


def _http(server: RunningServer) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(server.url.removeprefix("http://"))


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.status().removeprefix("StatusCode.")


def _metrics(server: RunningServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def mobilenet_server(zoo_dir: Path, tmp_path_factory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("mobilenet") / "server.log"
    with run_server(["--zoo", "mobilenet", "--model-dir", str(zoo_dir)], log) as server:
        yield server


@pytest.fixture
def servers(mtcnn_server, mobilenet_server) -> dict[str, RunningServer]:
    return {"mtcnn": mtcnn_server, "mobilenet": mobilenet_server}


@pytest.mark.parametrize("name", ["mtcnn", "mobilenet"])
def test_health_and_metadata_match_rest(servers, name: str) -> None:
    grpc_client, http_client = _grpc(servers[name]), _http(servers[name])
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready(name)
    server = grpc_client.get_server_metadata()
    assert (server.name, server.version) == tuple(
        http_client.get_server_metadata()[k] for k in ("name", "version")
    )
    ours = grpc_client.get_model_metadata(name, as_json=True)
    rest = http_client.get_model_metadata(name)
    for key in ("name", "versions", "platform"):
        assert ours[key] == rest[key], key
    for kind in ("inputs", "outputs"):
        # MessageToJson writes int64 as strings and leaves out a scalar's empty shape.
        tensors = [{**t, "shape": [int(d) for d in t.get("shape", [])]} for t in ours[kind]]
        assert tensors == rest[kind]
    with pytest.raises(ERROR) as error:
        grpc_client.get_model_metadata("nope")
    assert _code(error) == "NOT_FOUND" and "this server serves" in error.value.message()
    with pytest.raises(ERROR) as error:
        grpc_client.is_model_ready(name, model_version="2")
    assert _code(error) == "NOT_FOUND"


@pytest.mark.parametrize("name", ["mtcnn", "mobilenet"])
def test_infer_equals_rest(servers, name: str) -> None:
    tensors = TENSORS[name]()
    rest = _http(servers[name]).infer(name, _inputs(triton_http, tensors))
    ours = _grpc(servers[name]).infer(name, _inputs(triton_grpc, tensors), request_id="g-1")
    response = ours.get_response()
    assert (response.id, response.model_name, response.model_version) == ("g-1", name, "1")
    names = [o["name"] for o in rest.get_response()["outputs"]]
    assert [o.name for o in response.outputs] == names
    for output in names:
        expected = rest.as_numpy(output)
        assert ours.as_numpy(output).dtype == expected.dtype
        np.testing.assert_array_equal(ours.as_numpy(output), expected)
    if name == "mtcnn":
        assert len(ours.as_numpy("prob")) >= 1  # the photo has a face: a real comparison


def test_requested_outputs_and_typed_contents(mtcnn_server) -> None:
    """Outputs as asked, in order; inputs as typed `contents` instead of raw bytes."""
    tensors = _mtcnn_tensors()
    rest = _http(mtcnn_server).infer("mtcnn", _inputs(triton_http, tensors))
    request = service_pb2.ModelInferRequest(
        model_name="mtcnn", outputs=[{"name": "prob"}, {"name": "box"}]
    )
    for name, value in tensors.items():
        tensor = request.inputs.add(name=name, datatype="FP32", shape=value.shape)
        tensor.contents.fp32_contents.extend(value.reshape(-1).tolist())
    with grpc.insecure_channel(mtcnn_server.grpc_address) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert [o.name for o in response.outputs] == ["prob", "box"]
    for index, output in enumerate(response.outputs):
        got = np.frombuffer(response.raw_output_contents[index], "<f4").reshape(output.shape)
        np.testing.assert_array_equal(got, rest.as_numpy(output.name))


def test_model_config_and_statistics(mobilenet_server) -> None:
    client = _grpc(mobilenet_server)
    config = client.get_model_config("mobilenet").config
    assert config.name == "mobilenet" and config.platform == "tensorflow_graphdef"
    assert config.max_batch_size == 0  # batching is off on this server: full shapes
    assert [(i.name, list(i.dims)) for i in config.input] == [("input", [-1, 224, 224, 3])]
    assert [o.name for o in config.output] == ["probabilities", "logits"]
    assert config.parameters["task"].string_value == "image-classification"
    client.infer("mobilenet", _inputs(triton_grpc, _mobilenet_tensors()))
    (stats,) = client.get_inference_statistics("mobilenet").model_stats
    assert stats.name == "mobilenet" and stats.execution_count >= 1
    assert stats.inference_count >= stats.execution_count
    assert stats.inference_stats.compute_infer.count == stats.execution_count
    assert stats.inference_stats.compute_infer.ns > 0
    with pytest.raises(ERROR) as error:
        client.get_model_config("nope")
    assert _code(error) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"input": np.zeros((4, 4), np.float32)},
            "has shape [4, 4], the model expects [-1, -1, 3]",
        ),
        ({"factor": None}, "missing input tensor(s): factor"),
        ({"extra": np.zeros(1, np.float32)}, "unknown input 'extra'"),
        ({"min_size": np.array(np.nan, np.float32)}, "contains NaN or Inf"),
    ],
    ids=["shape", "missing", "unknown", "nan"],
)
def test_bad_tensors_get_invalid_argument_with_a_reason(mtcnn_server, change, reason) -> None:
    tensors = {**_mtcnn_tensors(), **change}
    tensors = {k: v for k, v in tensors.items() if v is not None}
    with pytest.raises(ERROR) as error:
        _grpc(mtcnn_server).infer("mtcnn", _inputs(triton_grpc, tensors))
    assert _code(error) == "INVALID_ARGUMENT"
    assert reason in error.value.message()


def test_wrong_datatype_size_and_output_are_refused(mtcnn_server) -> None:
    client = _grpc(mtcnn_server)
    tensors = _mtcnn_tensors()
    inputs = _inputs(triton_grpc, tensors)
    inputs[1] = triton_grpc.InferInput("min_size", [], "FP64")
    inputs[1].set_data_from_numpy(np.array(20.0))
    with pytest.raises(ERROR) as error:
        client.infer("mtcnn", inputs)
    assert _code(error) == "INVALID_ARGUMENT" and "has datatype FP64" in error.value.message()
    with pytest.raises(ERROR) as error:
        outputs = [triton_grpc.InferRequestedOutput("boxes")]
        client.infer("mtcnn", _inputs(triton_grpc, tensors), outputs=outputs)
    assert _code(error) == "INVALID_ARGUMENT" and "unknown output(s) boxes" in error.value.message()
    metrics = _metrics(mtcnn_server)
    method = f'endpoint="/{SERVICE}/ModelInfer"'
    for code in ("OK", "INVALID_ARGUMENT"):
        assert f'code="{code}",{method},model="mtcnn",protocol="grpc"' in metrics, code


def test_a_message_over_the_size_limit_is_refused_before_decoding(mtcnn_server) -> None:
    """mtcnn_server has the default --max-body-bytes (20 MiB); this input is 27 MB."""
    method = f'endpoint="/{SERVICE}/ModelInfer"'
    before = _metrics(mtcnn_server).count(method)
    tensors = {**_mtcnn_tensors(), "input": np.zeros((1500, 1500, 3), np.float32)}
    with pytest.raises(ERROR) as error:
        _grpc(mtcnn_server).infer("mtcnn", _inputs(triton_grpc, tensors))
    assert _code(error) == "RESOURCE_EXHAUSTED"
    assert "larger than max" in error.value.message()
    # gRPC refused it before any handler ran: no ModelInfer was counted at all.
    assert _metrics(mtcnn_server).count(method) == before


def test_unimplemented_rpcs_say_why(mtcnn_server) -> None:
    client = _grpc(mtcnn_server)
    for call in (
        client.get_model_repository_index,
        lambda: client.load_model("mtcnn"),
        client.get_system_shared_memory_status,
        client.get_cuda_shared_memory_status,
        client.get_log_settings,
    ):
        with pytest.raises(ERROR) as error:
            call()
        assert _code(error) == "UNIMPLEMENTED" and "not implemented: " in error.value.message()
    # Every one of them, streaming included, over a bare channel.
    with grpc.insecure_channel(mtcnn_server.grpc_address) as channel:
        for name, reason in UNIMPLEMENTED.items():
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary(f"/{SERVICE}/{name}")(b"", timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert error.value.details() == f"{name} is not implemented: {reason}"


def test_the_health_service_answers(mtcnn_server) -> None:
    with grpc.insecure_channel(mtcnn_server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


@contextlib.asynccontextmanager
async def _in_process(
    model: ServedModel, zoo_dir: Path, tokens: TokenFile | None = None, *flags: str
) -> AsyncIterator[tuple[triton_grpc_aio.InferenceServerClient, str]]:
    """The gRPC server in the test's own event loop, around the session's loaded model, for
    what needs the model held from outside (admission) or many token files."""
    settings = settings_for(zoo_dir, "--grpc-port", str(free_port()), *flags)
    server = GrpcServer(settings, model, Drain(), tokens)
    await server.start()
    client = triton_grpc_aio.InferenceServerClient(server.address)
    try:
        yield client, server.address
    finally:
        await client.close()
        await server.stop()


async def test_over_the_inflight_limit_gets_resource_exhausted(
    mtcnn_model, zoo_dir, monkeypatch
) -> None:
    monkeypatch.setattr(mtcnn_model, "max_inflight", 1)
    tensors = _mtcnn_tensors()
    async with _in_process(mtcnn_model, zoo_dir) as (client, address):
        with mtcnn_model.admit():  # one request is being handled
            with pytest.raises(ERROR) as error:
                await client.infer("mtcnn", _inputs(triton_grpc, tensors))
            assert _code(error) == "RESOURCE_EXHAUSTED" and "in flight" in error.value.message()
            async with grpc.aio.insecure_channel(address) as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ModelInfer(service_pb2.ModelInferRequest(model_name="mtcnn"))
            assert ("retry-after", "1") in tuple(refused.value.trailing_metadata())
            assert await client.is_server_live()  # metadata stays open
        result = await client.infer("mtcnn", _inputs(triton_grpc, tensors))
        assert result.as_numpy("prob").shape[0] >= 1


@pytest.mark.parametrize("scope", ["inference", "all"])
async def test_inference_needs_a_bearer_token(mtcnn_model, zoo_dir, tmp_path, scope) -> None:
    (tmp_path / "tokens").write_text(f"{SECRET}\n")
    tokens = TokenFile(tmp_path / "tokens")
    tensors = _mtcnn_tensors()
    async with _in_process(mtcnn_model, zoo_dir, tokens, "--auth-scope", scope) as (client, _):
        for headers, reason in (
            (None, "missing bearer token"),
            ({"authorization": "Bearer wrong"}, "invalid bearer token"),
        ):
            with pytest.raises(ERROR) as error:
                await client.infer("mtcnn", _inputs(triton_grpc, tensors), headers=headers)
            assert _code(error) == "UNAUTHENTICATED" and reason in error.value.message()
        good = {"authorization": f"Bearer {SECRET}"}
        result = await client.infer("mtcnn", _inputs(triton_grpc, tensors), headers=good)
        assert result.as_numpy("prob").shape[0] >= 1
        if scope == "inference":
            assert await client.get_model_metadata("mtcnn")
        else:
            with pytest.raises(ERROR) as error:
                await client.get_model_metadata("mtcnn")
            assert _code(error) == "UNAUTHENTICATED"
            assert await client.get_model_metadata("mtcnn", headers=good)


async def test_a_taken_port_is_an_error_not_a_shared_port(mtcnn_model, zoo_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(zoo_dir, "--grpc-port", str(port))
        with pytest.raises(OSError, match=f"gRPC on 127.0.0.1:{port}: Failed to bind"):
            await GrpcServer(settings, mtcnn_model, Drain(), None).start()


def _listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on: its socket inodes matched in /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_grpc_port_0_turns_grpc_off(zoo_dir: Path, tmp_path: Path) -> None:
    args = ["--zoo", "mobilenet", "--model-dir", str(zoo_dir), "--grpc-port", "0"]
    with run_server(args, tmp_path / "server.log") as server:
        assert server.grpc_address is None
        http_port = int(server.url.rsplit(":", 1)[1])
        assert _listening_ports(server.process.pid) == {http_port}


def _inflight(server: RunningServer, count: int) -> bool:
    return f'modelzoo_inflight_requests{{model="mobilenet"}} {count}.0' in _metrics(server)


def _wait_inflight(server: RunningServer, count: int) -> None:
    pause = threading.Event()
    for _ in range(500):
        if _inflight(server, count):
            return
        pause.wait(0.02)
    pytest.fail(f"never saw {count} requests in flight")


def test_sigterm_finishes_an_in_flight_call(zoo_dir: Path, tmp_path: Path) -> None:
    """The gRPC call is held in flight without timing: a REST request is admitted and still
    uploading, so the batcher keeps the gRPC call waiting for it (up to --max-delay-ms)."""
    args = ["--zoo", "mobilenet", "--model-dir", str(zoo_dir), "--drain-seconds", "30"]
    # TensorFlow: a model on LiteRT runs each request alone, with no batcher to wait in.
    args += ["--runtime", "tensorflow", "--max-batch-size", "2", "--max-delay-ms", "60000"]
    with run_server(args, tmp_path / "server.log") as server:
        tensors = {"input": _mobilenet_tensors()["input"][:1]}
        channel = grpc.insecure_channel(server.grpc_address)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        blob = tensors["input"].astype("<f4").tobytes()
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 224, 224, 3],
                        "parameters": {"binary_data_size": len(blob)},
                    }
                ]
            }
        ).encode()
        body = head + blob
        rest = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=60)
        rest.putrequest("POST", "/v2/models/mobilenet/infer")
        rest.putheader("Content-Type", "application/octet-stream")
        rest.putheader(HEADER_LENGTH, str(len(head)))
        rest.putheader("Content-Length", str(len(body)))
        rest.endheaders()
        rest.send(body[: len(body) // 2])
        _wait_inflight(server, 1)

        answers: queue.Queue = queue.Queue()
        client = _grpc(server)
        client.async_infer(
            "mobilenet",
            _inputs(triton_grpc, tensors),
            callback=lambda result, error: answers.put((result, error)),
        )
        _wait_inflight(server, 2)  # the gRPC call waits in the batcher for the REST one
        config = client.get_model_config("mobilenet").config
        assert config.max_batch_size == 2 and list(config.input[0].dims) == [224, 224, 3]
        assert config.dynamic_batching.max_queue_delay_microseconds == 60_000_000

        server.process.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(ERROR) as error:  # draining: no new calls
            triton_grpc.InferenceServerClient(server.grpc_address).is_server_live()
        # Refused by gRPC's own shutdown: UNAVAILABLE, or CANCELLED when the call raced it.
        assert _code(error) in ("UNAVAILABLE", "CANCELLED")

        rest.send(body[len(body) // 2 :])
        response = rest.getresponse()
        assert response.status == 200
        result, failure = answers.get(timeout=60)
        assert failure is None, failure
        outputs = {o["name"]: o["data"] for o in json.loads(response.read())["outputs"]}
        np.testing.assert_allclose(
            result.as_numpy("probabilities")[0], outputs["probabilities"], rtol=1e-6, atol=0
        )
        assert server.process.wait(timeout=60) == 0
        channel.close()

"""A user's own graph (--graph + --signature) served as a tensor model; drain on SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests.graphs import affine_graph, write_signature
from tests.servers import run_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def affine_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("affine")
    return affine_graph(folder / "affine.pb"), write_signature(folder / "affine.json")


def test_tensor_model_over_v2_and_infer_is_refused(affine_files, tmp_path: Path) -> None:
    graph, signature = affine_files
    with run_server(
        ["--graph", str(graph), "--signature", str(signature), "--name", "affine"], tmp_path / "log"
    ) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = triton.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("affine", [tensor])
        np.testing.assert_array_equal(result.as_numpy("y"), 2 * x + 1)
        request = urllib.request.Request(
            f"{server.url}/infer",
            data=b"\x89PNG",
            method="POST",
            headers={"Content-Type": "image/png"},
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 400
        assert "raw tensor model" in json.loads(error.value.read())["error"]


def _inflight(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return 'modelzoo_inflight_requests{model="affine"} 1.0' in response.read().decode()


def test_sigterm_finishes_in_flight_requests(affine_files, tmp_path: Path) -> None:
    graph, signature = affine_files
    args = [
        "--graph",
        str(graph),
        "--signature",
        str(signature),
        "--name",
        "affine",
        "--drain-seconds",
        "20",
    ]
    with run_server(args, tmp_path / "log") as server:
        x = np.arange(4000, dtype=np.float32).reshape(1000, 4)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1000, 4],
                        "data": x.reshape(-1).tolist(),
                    }
                ]
            }
        ).encode()
        # Send half the body, so the request is accepted and still uploading at SIGTERM.
        connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
        connection.putrequest("POST", "/v2/models/affine/infer")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[: len(body) // 2])
        # A keep-alive client between two requests: its connection stays open.
        idle = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
        idle.request("GET", "/v2/models/affine")
        assert idle.getresponse().read() and idle.sock is not None
        pause = threading.Event()
        for _ in range(500):
            if _inflight(server.url):
                break
            pause.wait(0.01)
        else:
            pytest.fail("the request was never seen in flight")
        server.process.send_signal(signal.SIGTERM)
        pause.wait(0.5)
        with pytest.raises(OSError):  # draining: no new connections
            urllib.request.urlopen(f"{server.url}/v2/health/live", timeout=2)
        # Its next request is answered, and told to reconnect (to a pod that stays).
        idle.request("GET", "/v2/models/affine")
        answer = idle.getresponse()
        assert answer.status == 200 and answer.getheader("Connection") == "close"
        connection.send(body[len(body) // 2 :])
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "close"
        outputs = json.loads(response.read())["outputs"]
        np.testing.assert_array_equal(np.reshape(outputs[0]["data"], (1000, 4)), 2 * x + 1)
        assert server.process.wait(timeout=30) == 0

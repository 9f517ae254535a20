"""The pod contract: the container the operator builds, run exactly as built.

Command, args and env come from a Deployment made by the operator's builders; only the
paths a pod gets from its image and volumes are mapped to local ones (`--model-dir` →
the built zoo, the fetch step's /models → a temp dir, the signature ConfigMap → a file),
and the host/port to 127.0.0.1 and a free port. Then the real server must answer
/v2/health/ready and /infer, and drain on SIGTERM.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import ZooEntryNames, parse_zoo
from tests import photos
from tests.servers import free_port, http_origin, stop, wait_ready

pytestmark = pytest.mark.integration
SETTINGS = Settings(drain_seconds=5)


def build(model: dict, entry_names: ZooEntryNames) -> tuple[dict, dict[str, dict]]:
    body = {
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u", "generation": 1},
        "spec": {"models": [model]},
    }
    zoo = parse_zoo(body, entry_names)
    assert not zoo.problems, zoo.problems
    manifests = {m["kind"]: m for m in builders.model_children(zoo, zoo.models[0], SETTINGS)}
    return manifests["Deployment"]["spec"]["template"]["spec"], manifests


def executable(command: Sequence[str]) -> list[str]:
    """Resolve the image's PATH lookup against this venv (where the console scripts are)."""
    first = shutil.which(
        command[0], path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    assert first, f"{command[0]} is not installed"
    return [first, *command[1:]]


def map_paths(args: list[str], mapping: dict[str, str]) -> list[str]:
    out = list(args)
    for i, value in enumerate(out):
        for pod_path, local in mapping.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                out[i] = local + value[len(pod_path) :]
    return out


def local_args(args: list[str], mapping: dict[str, str], port: int) -> list[str]:
    out = map_paths(args, mapping)
    out[out.index("--host") + 1] = "127.0.0.1"
    out[out.index("--port") + 1] = str(port)
    return out


def container_env(container: dict) -> dict[str, str]:
    env = {item["name"]: item["value"] for item in container.get("env") or ()}
    # The pod's HOME is its /tmp emptyDir; keep it private here too.
    return {**os.environ, **env}


def launch(
    container: dict, mapping: dict[str, str], tmp: Path
) -> tuple[subprocess.Popen, int, Path]:
    """Start exactly the container's command, args and env locally: (process, port, log)."""
    port = free_port()
    argv = executable(container["command"]) + local_args(container["args"], mapping, port)
    env = container_env(container)
    # The pod's gRPC port, mapped like --port: another server here may hold the default.
    env["MODELZOO_GRPC_PORT"] = str(free_port())
    if env.get("HOME") == "/tmp":
        env["HOME"] = str(tmp)
    log = tmp / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return process, port, log


@contextmanager
def running(container: dict, mapping: dict[str, str], tmp: Path) -> Iterator[str]:
    process, port, log = launch(container, mapping, tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log, timeout=300)
        yield url
    finally:
        # the pod's grace period bounds the drain
        if not stop(process, grace=SETTINGS.termination_grace_seconds):
            pytest.fail(f"the server did not stop within the grace period:\n{log.read_text()}")


def post_photo(url: str) -> dict:
    request = urllib.request.Request(
        f"{url}/infer",
        data=photos.grace_hopper_jpeg(),
        headers={"Content-Type": "image/jpeg"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.load(response)


def catalog_record(zoo_dir: Path, name: str) -> dict:
    records = json.loads((zoo_dir / "catalog.json").read_text())["models"]
    return next(r for r in records if r["name"] == name)


def test_a_zoo_model_pod_serves_as_built(zoo_dir: Path, tmp_path: Path):
    spec, _ = build(
        {"name": "faces", "zoo": "mtcnn", "replicas": 1, "gpu": 0}, ZooEntryNames(None, "")
    )
    (container,) = spec["containers"]
    with running(container, {SETTINGS.model_dir: str(zoo_dir)}, tmp_path) as url:
        with urllib.request.urlopen(f"{url}/v2/health/live", timeout=5) as response:
            assert response.status == 200
        result = post_photo(url)
    assert result["model"] == "faces" and result["task"] == "face-detection"
    assert len(result["detections"]) == 1


@pytest.fixture
def origin(zoo_dir: Path) -> Iterator[str]:
    """A plain HTTP server with the built graphs (where a user's model would live)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(zoo_dir))
    with http_origin(handler) as url:
        yield url


def test_a_url_model_pod_fetches_checks_and_serves(zoo_dir: Path, tmp_path: Path, origin: str):
    record = catalog_record(zoo_dir, "mtcnn")
    (artifact,) = [a for a in record["artifacts"] if a["format"] == "graphdef"]
    graph = zoo_dir / artifact["file"]
    sha = hashlib.sha256(graph.read_bytes()).hexdigest()
    model = {
        "name": "faces",
        "source": {"url": f"{origin}/{artifact['file']}", "sha256": sha},
        "task": record["task"],
        "signature": record["signature"],
        "preprocessing": record["preprocessing"],
        "replicas": 1,
        "gpu": 0,
    }
    spec, manifests = build(model, ZooEntryNames(None, ""))
    volumes = tmp_path / "models"
    config = tmp_path / "signature"
    config.mkdir()
    for name, text in manifests["ConfigMap"]["data"].items():
        (config / name).write_text(text)
    prepared, message = tmp_path / "prepared", tmp_path / "termination-log"
    prepared.mkdir()
    mapping = {
        builders.GRAPH_MOUNT: str(volumes),
        builders.SIGNATURE_MOUNT: str(config),
        builders.PREPARED_MOUNT: str(prepared),
        builders.TERMINATION_LOG: str(message),
    }

    init, prepare = spec["initContainers"]
    fetch = executable(init["command"]) + map_paths(init["args"], mapping)
    result = subprocess.run(fetch, env=container_env(init), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (volumes / "model.pb").read_bytes() == graph.read_bytes()
    # mtcnn does not convert: the prepare step says so, and TensorFlow serves the graph.
    steps = executable(prepare["command"]) + map_paths(prepare["args"], mapping)
    result = subprocess.run(steps, env=container_env(prepare), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert message.read_text().startswith("tensorflow: "), message.read_text()

    (container,) = spec["containers"]
    with running(container, mapping, tmp_path) as url:
        result = post_photo(url)
    assert result["model"] == "faces" and len(result["detections"]) == 1

    # A tampered download is refused by the init container: the pod never starts serving.
    bad = list(fetch)
    bad[bad.index("--sha256") + 1] = "0" * 64
    bad[bad.index("--out") + 1] = str(tmp_path / "other" / "model.pb")
    refused = subprocess.run(bad, env=container_env(init), capture_output=True, text=True)
    assert refused.returncode != 0 and "sha256 mismatch" in refused.stderr
    assert not (tmp_path / "other" / "model.pb").exists()

"""What a user would run instead: the `mtcnn` package in-process, and KServe's ModelServer.

KServe runs in its own venv (venvs.py) as a subprocess on loopback ports, serving the
same frozen graph through `kserve_model.py` in two set-ups (naive and tuned, below); the
bench drives each with the same V2 payloads and the same clients as ModelZoo's server,
and checks every answer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelzoo_server.cpu import available_cpus
from modelzoo_server.imaging import decode_image, to_array
from modelzoo_server.model_entry import ModelEntry
from tests.bench.loadgen import Load, drive_threads
from tests.servers import free_port, stop, wait_ready

KSERVE_MODEL_FILE = Path(__file__).with_name("kserve_model.py")


@functools.cache
def _detector():
    from mtcnn import MTCNN

    return MTCNN()


def mtcnn_package(
    jpegs: tuple[bytes, ...], concurrency: int, total: int, cap_s: float, warm: bool = True
) -> Load:
    """`MTCNN().detect_faces` on the same JPEG bytes (decoding included, as for /infer)."""
    detector = _detector()

    def work(index: int) -> None:
        image = to_array(decode_image(jpegs[index % len(jpegs)]))
        detector.detect_faces(image)

    return drive_threads(work, concurrency, total, cap_s, warmup=len(jpegs) if warm else 0)


def _kserve_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**keep, "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass(frozen=True)
class KServeSetup:
    """One way to run KServe: the cell's path, and how its ModelServer is started."""

    path: str  # the measurements table's path
    tuned: bool  # kserve_model.py's --tuned: input signature, async `predict`
    grpc: bool  # driven over gRPC (tritonclient.grpc.aio), else REST V2 (binary tensors)
    flags: tuple[str, ...]  # KServe's own ModelServer flags


# The naive set-up as KServe's custom-model docs write it, on its default flags. The tuned
# one goes over gRPC: KServe's REST decoder turns binary tensors into Python lists of
# floats (kserve_profile.py measures it) and no flag avoids that, while its gRPC servicer
# keeps them as bytes. Its async `predict` hands the graph to the loop's executor, sized
# (--max_asyncio_workers) like ModelZoo's: the same thread budget for both servers;
# KServe's default (CPUs + 4) measured the same within noise on 2 cores. --workers stays 1:
# it forks REST processes only, and pickles the loaded model into them, which a
# TensorFlow function refuses.
KSERVE_NAIVE = KServeSetup("KServe V2, naive", tuned=False, grpc=False, flags=())
KSERVE_TUNED = KServeSetup(
    "KServe gRPC, tuned",
    tuned=True,
    grpc=True,
    flags=("--max_asyncio_workers", str(max(2, available_cpus()))),
)
KSERVE_SETUPS = (KSERVE_NAIVE, KSERVE_TUNED)
# ModelZoo's server beside the tuned set-up, like for like: the same graph on the same
# TensorFlow (by default the server may run the entry's .tflite on LiteRT instead), one
# graph call a request as KServe makes (batching off), the same gRPC client.
KSERVE_COUNTERPART = "served gRPC, runtime tensorflow"


@dataclass(frozen=True)
class KServeServer:
    url: str  # REST
    grpc_address: str  # host:port
    pid: int


def _signature_json(entry: ModelEntry) -> str:
    def specs(tensors) -> list[dict[str, str]]:
        return [{"name": s.name, "tensor": s.tensor, "dtype": str(s.dtype)} for s in tensors]

    return json.dumps(
        {"inputs": specs(entry.signature.inputs), "outputs": specs(entry.signature.outputs)}
    )


@contextlib.contextmanager
def kserve_server(
    python: Path, entry: ModelEntry, log: Path, setup: KServeSetup
) -> Iterator[KServeServer]:
    """KServe's ModelServer with the entry's graph on free loopback ports (REST and gRPC)."""
    port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-kserve-") as workdir:
        spec = Path(workdir) / "signature.json"
        spec.write_text(_signature_json(entry))
        command = [
            str(python),
            "-P",  # KServe's venv only: nothing from the repo on sys.path
            str(KSERVE_MODEL_FILE),
            "--graph",
            str(entry.path),
            "--signature",
            str(spec),
            "--model_name",
            entry.name,
            "--http_port",
            str(port),
            "--grpc_port",
            str(grpc_port),
            *(["--tuned"] if setup.tuned else []),
            *setup.flags,
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=_kserve_env(),
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, log, timeout=240, path=f"/v2/models/{entry.name}/ready")
            yield KServeServer(url, f"127.0.0.1:{grpc_port}", process.pid)
        finally:
            stop(process, grace=30)

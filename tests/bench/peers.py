"""What a user would run instead: the `mtcnn` package in-process, and KServe's ModelServer.

KServe runs in its own venv (venvs.py) as a subprocess on a loopback port, serving the
same frozen graph through `kserve_model.py`; the bench drives it with the same V2
payloads as ModelZoo's server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def kserve_server(python: Path, entry: ModelEntry, log: Path) -> Iterator[tuple[str, int]]:
    """KServe's ModelServer with the entry's graph on a free loopback port: (url, pid)."""
    signature = {
        "inputs": [
            {"name": s.name, "tensor": s.tensor, "dtype": str(s.dtype)}
            for s in entry.signature.inputs
        ],
        "outputs": [
            {"name": s.name, "tensor": s.tensor, "dtype": str(s.dtype)}
            for s in entry.signature.outputs
        ],
    }
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-kserve-") as workdir:
        spec = Path(workdir) / "signature.json"
        spec.write_text(json.dumps(signature))
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
            str(free_port()),
            "--enable_grpc",
            "false",
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
            yield url, process.pid
        finally:
            stop(process, grace=30)

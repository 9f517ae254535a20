"""Start the real `modelzoo-server` command on a loopback port, and stop it."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str
    grpc_address: str | None  # host:port, None when the args turn gRPC off


def wait_ready(
    url: str,
    process: subprocess.Popen,
    log: Path,
    timeout: float = 180.0,
    path: str = "/v2/health/ready",
) -> None:
    """Poll `url + path` until it answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}{path}", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"server not ready after {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def run_server(
    args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """`python -m modelzoo_server ARGS --host 127.0.0.1 --port FREE`, stopped on exit; gRPC
    on another free port unless ARGS give --grpc-port (never the default, which another
    server on this machine may hold)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = list(args)
    if "--grpc-port" not in argv:
        argv += ["--grpc-port", str(free_port())]
    grpc_port = argv[argv.index("--grpc-port") + 1]
    grpc_address = f"127.0.0.1:{grpc_port}" if grpc_port != "0" else None
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelzoo_server",
                *argv,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_ready(url, process, log)
        yield RunningServer(process, url, grpc_address)
    finally:
        stop(process, grace=30)


def stop(process: subprocess.Popen, grace: float) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True when it stopped by itself."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


@contextlib.contextmanager
def http_origin(
    handler: Callable[..., http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1"
) -> Iterator[str]:
    """A plain threaded HTTP server on a free port of `host` (loopback unless a test's
    own pods must reach it); yields its base URL."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

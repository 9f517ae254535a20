"""`modelzoo-healthcheck`, what the chart's `helm test` pod runs, against a real HTTP server."""

from __future__ import annotations

import http.server
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import http_origin

pytestmark = pytest.mark.integration
SCRIPT = str(Path(sys.executable).parent / "modelzoo-healthcheck")


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    with http_origin(Health) as url:
        yield url


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_a_healthy_endpoint_passes(origin: str) -> None:
    done = run(f"{origin}/healthz")
    assert done.returncode == 0 and "answered 200" in done.stdout


def test_an_unhealthy_endpoint_fails_after_its_attempts(origin: str) -> None:
    done = run(f"{origin}/broken", "--attempts", "2", "--delay", "0.1")
    assert done.returncode == 1
    assert done.stderr.count("503") == 2


def test_a_bad_url_is_one_line_per_attempt_not_a_traceback() -> None:
    done = run("not-a-url", "--attempts", "1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "unknown url type" in done.stderr

"""The init container's fetch step (`modelzoo-fetch`), against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelzoo_server.fetch import FetchError, fetch, main

pytestmark = pytest.mark.unit
GRAPH = b"\x08\x01" + bytes(range(256)) * 4096  # ~1 MB of "graph"
GRAPH_SHA = hashlib.sha256(GRAPH).hexdigest()


@pytest.fixture
def origin() -> Iterator[str]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path != "/model.pb":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(GRAPH)))
            self.end_headers()
            self.wfile.write(GRAPH)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_and_checks(origin, tmp_path: Path):
    out = tmp_path / "models" / "model.pb"
    assert fetch(f"{origin}/model.pb", GRAPH_SHA, out) is True
    assert out.read_bytes() == GRAPH
    assert fetch(f"{origin}/model.pb", GRAPH_SHA.upper(), out) is False, "kept when already right"
    assert [p.name for p in out.parent.iterdir()] == ["model.pb"], "no temporary file left"


def test_a_wrong_digest_is_refused_and_nothing_is_left(origin, tmp_path: Path):
    out = tmp_path / "model.pb"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(f"{origin}/model.pb", "0" * 64, out)
    assert list(tmp_path.iterdir()) == []
    assert main(["--url", f"{origin}/model.pb", "--sha256", "0" * 64, "--out", str(out)]) == 1


def test_refusals(origin, tmp_path: Path):
    with pytest.raises(FetchError, match="64 hex"):
        fetch(f"{origin}/model.pb", "abc", tmp_path / "m.pb")
    with pytest.raises(FetchError, match="http"):
        fetch("file:///etc/passwd", GRAPH_SHA, tmp_path / "m.pb")
    with pytest.raises(FetchError, match="larger"):
        fetch(f"{origin}/model.pb", GRAPH_SHA, tmp_path / "m.pb", max_bytes=1000)
    with pytest.raises(FetchError, match="cannot download"):
        fetch(f"{origin}/absent.pb", GRAPH_SHA, tmp_path / "m.pb")
    assert not (tmp_path / "m.pb").exists()


def test_main_succeeds(origin, tmp_path: Path, capsys):
    out = tmp_path / "model.pb"
    assert main(["--url", f"{origin}/model.pb", "--sha256", GRAPH_SHA, "--out", str(out)]) == 0
    assert "sha256 ok" in capsys.readouterr().out


def test_the_fetch_step_does_not_load_tensorflow():
    """It runs before the server in every `source.url` pod: it must start in a blink."""
    probe = "import sys, modelzoo_server.fetch; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

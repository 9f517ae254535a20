"""`modelzoo-fetch` on a SavedModel `.tar.gz`: hashed as downloaded, kept as downloaded,
and refused with its reason when the server would refuse it."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelzoo_server.fetch import FetchError, fetch, main
from tests.servers import http_origin

pytestmark = pytest.mark.unit


def _archive(*members: tuple[str, bytes, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GOOD = _archive(("model/saved_model.pb", tarfile.REGTYPE, b"graph"))
LINKED = _archive(
    ("model/saved_model.pb", tarfile.REGTYPE, b"graph"), ("model/x", tarfile.SYMTYPE, b"")
)
FILES = {"/good.tar.gz": GOOD, "/linked.tar.gz": LINKED}


@pytest.fixture
def origin() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = FILES.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http_origin(Handler) as url:
        yield url


def test_an_archive_is_kept_as_downloaded(origin: str, tmp_path: Path) -> None:
    out = tmp_path / "model.pb"  # the operator's one name for every download
    assert fetch(f"{origin}/good.tar.gz", hashlib.sha256(GOOD).hexdigest(), out)
    assert out.read_bytes() == GOOD


def test_an_archive_with_a_link_is_refused_for_good(
    origin: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "model.pb"
    sha = hashlib.sha256(LINKED).hexdigest()
    with pytest.raises(FetchError, match="'model/x' is a link"):
        fetch(f"{origin}/linked.tar.gz", sha, out)
    assert list(tmp_path.iterdir()) == []
    # Not retried: the same bytes would be refused again.
    args = ["--url", f"{origin}/linked.tar.gz", "--sha256", sha, "--out", str(out)]
    assert main([*args, "--retries", "3"]) == 1
    assert capsys.readouterr().err.count("fetch: refusing the archive") == 1

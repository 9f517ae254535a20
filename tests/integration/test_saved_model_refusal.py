"""Hostile or unservable SavedModels are refused at start, before any of their functions
runs: exit 2 and one readable line, and the file a forbidden op would write never appears."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tensorflow.core.protobuf import saved_model_pb2

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.graph_policy import GraphLimits
from modelzoo_models.saved_model import check_saved_model
from tests import saved_models

pytestmark = pytest.mark.integration


def _serve(graph: Path, *extra: str) -> str:
    """Start the server on `graph`; assert it refuses with exit 2 and one line: that line."""
    result = subprocess.run(
        [
            sys.executable, "-m", "modelzoo_server", "--graph", str(graph),
            "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    # Above it only TensorFlow's own start-up notices (oneDNN), as for a refused .pb.
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("modelzoo-server: refusing to serve: "), line
    assert result.stderr.count("modelzoo-server:") == 1, result.stderr[-3000:]
    return line


def test_a_signature_that_writes_a_file_never_runs(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    model = saved_models.writes_file(tmp_path / "writer", victim)
    assert not victim.exists()
    line = _serve(model)
    assert "'WriteFile' (file I/O)" in line, line
    assert not victim.exists(), "the refused model wrote its file"
    # The same model as an archive, pinned correctly: refused all the same.
    archive = saved_models.tar_gz(model, tmp_path / "writer.tar.gz")
    line = _serve(archive, "--sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    assert "'WriteFile'" in line
    assert not victim.exists()


def test_a_resource_that_writes_a_file_when_loaded_is_never_loaded(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    line = _serve(saved_models.writes_on_load(tmp_path / "onload", victim))
    assert "'WriteFile' (file I/O)" in line, line
    assert not victim.exists(), "the refused model was loaded"


def test_reading_a_file_or_calling_python_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "secret.txt"
    victim.write_text("1")
    assert "'ReadFile' (file I/O)" in _serve(saved_models.reads_file(tmp_path / "r", victim))
    line = _serve(saved_models.calls_python(tmp_path / "py"))
    assert "PyFunc' (calls back into Python)" in line, line


def test_asset_files_are_refused(tmp_path: Path) -> None:
    model = saved_models.with_vocabulary(tmp_path / "vocab", tmp_path / "words.txt")
    line = _serve(model)
    assert "asset file 'assets/words.txt'" in line, line
    assert "read files" in line


def test_a_table_initialised_from_a_file_is_refused_without_assets(tmp_path: Path) -> None:
    """With its asset folder and asset list stripped, the table's op alone is refused."""
    model = saved_models.with_vocabulary(tmp_path / "vocab", tmp_path / "words.txt")
    for asset in (model / "assets").iterdir():
        asset.unlink()
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((model / "saved_model.pb").read_bytes())
    del proto.meta_graphs[0].asset_file_def[:]
    (model / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(RefusedGraph, match=r"InitializeTableFromTextFile.*from a file"):
        check_saved_model(model, "serving_default", GraphLimits(), 1 << 30)


@pytest.mark.parametrize(
    "name, kind, reason",
    [
        ("model/variables/link", tarfile.SYMTYPE, "is a link"),
        ("model/hard", tarfile.LNKTYPE, "is a link"),
        ("../escaped", tarfile.REGTYPE, "has a '..' in its path"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, name: str, kind: bytes, reason: str) -> None:
    model = saved_models.two_inputs(tmp_path / "two")
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else "model/saved_model.pb"
    data = b"escaped" if kind == tarfile.REGTYPE else b""
    member.size = len(data)
    archive = saved_models.tar_gz_with(tmp_path / "bad.tar.gz", model, member, data)
    line = _serve(archive)
    assert f"archive member {name!r} {reason}" in line, line
    assert not (tmp_path / "escaped").exists()


def test_a_wrong_sha256_is_refused(tmp_path: Path) -> None:
    model = saved_models.two_inputs(tmp_path / "two")
    assert "sha256 mismatch: expected " + "0" * 64 + ", folder has" in _serve(
        model, "--sha256", "0" * 64
    )
    archive = saved_models.tar_gz(model, tmp_path / "two.tar.gz")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    line = _serve(archive, "--sha256", "0" * 64)
    assert f"sha256 mismatch: expected {'0' * 64}, file has {actual}" in line, line


def test_an_unknown_signature_name_is_refused(tmp_path: Path) -> None:
    line = _serve(saved_models.two_inputs(tmp_path / "two"), "--signature-name", "nope")
    assert "no signature 'nope' (it has: scaled, serving_default)" in line, line

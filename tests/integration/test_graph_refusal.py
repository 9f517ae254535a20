"""Hostile graphs are refused before import: one clear line, exit 2, no file touched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.graphs import AFFINE_SIGNATURE, affine_graph, hostile_graphs, write_signature

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[dict[str, Path], Path, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    victim = folder / "victim.txt"
    return hostile_graphs(folder, victim), victim, write_signature(folder / "signature.json")


def _serve(graph: Path, signature: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelzoo_server",
            "--graph",
            str(graph),
            "--signature",
            str(signature),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_forbidden_op_family_is_refused(hostile) -> None:
    graphs, victim, signature = hostile
    for op, graph in graphs.items():
        result = _serve(graph, signature)
        assert result.returncode == 2, (op, result.stderr[-2000:])
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("modelzoo-server: refusing to serve:"), line
        assert repr(op.split("-")[0]) in line, line
        assert not victim.exists()


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    graph = affine_graph(tmp_path / "affine.pb")
    result = _serve(graph, write_signature(tmp_path / "s.json"), "--sha256", "0" * 64)
    assert result.returncode == 2
    actual = hashlib.sha256(graph.read_bytes()).hexdigest()
    assert f"sha256 mismatch: expected {'0' * 64}, file has {actual}" in result.stderr


def test_truncated_protobuf_is_refused(tmp_path: Path) -> None:
    graph = affine_graph(tmp_path / "affine.pb")
    graph.write_bytes(graph.read_bytes()[:-7])
    result = _serve(graph, write_signature(tmp_path / "s.json"))
    assert result.returncode == 2
    assert "not a valid GraphDef" in result.stderr


def test_unknown_task_in_a_signature_file_is_refused(tmp_path: Path) -> None:
    graph = affine_graph(tmp_path / "affine.pb")
    signature = write_signature(tmp_path / "s.json", {**AFFINE_SIGNATURE, "task": "mind-reading"})
    result = _serve(graph, signature)
    assert result.returncode == 2
    assert "task must be one of" in result.stderr.strip().splitlines()[-1]
    assert "'mind-reading'" in result.stderr.strip().splitlines()[-1]

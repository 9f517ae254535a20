"""Unpacking an untrusted `.tar.gz` (modelzoo_models.safe_tar), on archives built here."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from modelzoo_models.safe_tar import ArchiveLimits, UnsafeArchive, extract, is_archive

pytestmark = pytest.mark.unit


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_a_plain_tree_unpacks(tmp_path: Path) -> None:
    data = _archive(
        (_member("model", tarfile.DIRTYPE), b""),
        (_member("model/saved_model.pb"), b"graph"),
        (_member("model/variables/variables.index"), b"index"),
    )
    extract(data, tmp_path / "out")
    assert (tmp_path / "out/model/saved_model.pb").read_bytes() == b"graph"
    assert (tmp_path / "out/model/variables/variables.index").read_bytes() == b"index"


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("model/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_member("model/inside", tarfile.SYMTYPE, "saved_model.pb"), "is a link"),
        (_member("model/hard", tarfile.LNKTYPE, "model/saved_model.pb"), "is a link"),
        (_member("../escaped"), "'..'"),
        (_member("model/../../escaped"), "'..'"),
        (_member("/tmp/absolute"), "absolute path"),
        (_member("model/fifo", tarfile.FIFOTYPE), "not a regular file"),
        (_member("model/dev", tarfile.CHRTYPE), "not a regular file"),
    ],
)
def test_hostile_members_are_refused_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, reason: str
) -> None:
    data = _archive((_member("model/saved_model.pb"), b"graph"), (member, b"x"))
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=reason):
        extract(data, out)
    assert list(out.rglob("*")) == [], "nothing is written when any member is refused"
    assert not (tmp_path / "escaped").exists()


def test_caps_on_size_and_count(tmp_path: Path) -> None:
    big = _archive((_member("a"), b"x" * 1000), (_member("b"), b"x" * 1000))
    with pytest.raises(UnsafeArchive, match="more than 1500 bytes"):
        extract(big, tmp_path / "a", ArchiveLimits(max_bytes=1500))
    many = _archive(*((_member(f"f{i}"), b"") for i in range(5)))
    with pytest.raises(UnsafeArchive, match="more than 4 members"):
        extract(many, tmp_path / "b", ArchiveLimits(max_files=4))


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match=r"not a readable \.tar\.gz"):
        extract(b"\x1f\x8b but not really gzip", tmp_path / "out")
    graph = tmp_path / "model.pb"
    graph.write_bytes(b"\x08\x01")
    assert not is_archive(graph)
    assert not is_archive(tmp_path)
    archive = tmp_path / "model.pb.gz"
    archive.write_bytes(_archive((_member("a"), b"")))
    assert is_archive(archive)

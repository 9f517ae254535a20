"""Unpack a SavedModel `.tar.gz` that nobody has vouched for.

An archive can place files anywhere the process may write (absolute paths, `..`, links
that point out of the folder), or expand far beyond its own size. Every member is checked
before anything is written: regular files and folders only (no symlinks, hard links or
devices), relative paths without `..`, and caps on the number of members and their total
size; tarfile's `data` filter then guards the extraction itself as a second line.
Standard library only: the init container (modelzoo-fetch) uses it without TensorFlow.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelzoo_models.contract import RefusedGraph

GZIP_MAGIC = b"\x1f\x8b"


class UnsafeArchive(RefusedGraph):
    """The archive is not a plain tree of files, or is larger than the caps."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 4 << 30  # the members' sizes, added up
    max_files: int = 10_000


def is_archive(path: Path) -> bool:
    """A gzip file (what a `.tar.gz` is), whatever its name: the operator's init container
    stores every download under the same file name."""
    try:
        with path.open("rb") as handle:
            return handle.read(2) == GZIP_MAGIC
    except OSError:  # a folder, or nothing there: not an archive
        return False


def _check(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym() or member.islnk():
        raise UnsafeArchive(f"archive member {name!r} is a link; links are refused")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"archive member {name!r} is not a regular file or folder")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchive(f"archive member {name!r} has a '..' in its path")


def checked_members(tar: tarfile.TarFile, limits: ArchiveLimits) -> list[tarfile.TarInfo]:
    """Every member, checked one by one as the stream is read, so a bomb stops at the
    member that crosses a cap rather than after decompressing all of it."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        _check(member)
        members.append(member)
        total += member.size
        if len(members) > limits.max_files:
            raise UnsafeArchive(f"archive has more than {limits.max_files} members")
        if total > limits.max_bytes:
            raise UnsafeArchive(f"archive unpacks to more than {limits.max_bytes} bytes")
    return members


def _open(source: bytes | Path) -> tarfile.TarFile:
    try:
        if isinstance(source, Path):
            return tarfile.open(source, mode="r:gz")
        return tarfile.open(fileobj=io.BytesIO(source), mode="r:gz")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchive(f"not a readable .tar.gz: {exc}") from exc


def check_archive(source: bytes | Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
    """UnsafeArchive unless `extract` would accept this archive (bytes or file); writes
    nothing."""
    try:
        with _open(source) as tar:
            checked_members(tar, limits)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchive(f"not a readable .tar.gz: {exc}") from exc


def extract(data: bytes, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Unpack the `.tar.gz` bytes into `dest` (created), after checking every member."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _open(data) as tar:
            members = checked_members(tar, limits)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchive(f"cannot unpack the archive: {exc}") from exc

"""`modelzoo-digest PATH`: the sha256 to pin a model with (`--sha256`, `source.sha256`).

A file (a `.pb`, a SavedModel `.tar.gz`): the sha256 of its bytes, as downloaded. A
SavedModel folder: the sha256 of a canonical listing, one line per file, sorted by
relative POSIX path, each line `<sha256 of the file>  <path>` and a newline (the format
of `sha256sum`), so the same tree gives the same digest on any machine:

    (cd model && find . -type f | sed 's|^\\./||' | LC_ALL=C sort \\
        | while read -r f; do sha256sum "$f"; done) | sha256sum

Folders count only through the files in them. A link or any other special file is
refused: what is pinned must be what gets read. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from modelzoo_models.contract import RefusedGraph, sha256_file


def tree_listing(root: Path) -> str:
    """The canonical listing of the files under `root` (see the module's doc)."""
    lines = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                relative = path.relative_to(root).as_posix()
                raise RefusedGraph(f"{relative!r} in {root} is a link or special file")
        for name in files:
            path = Path(folder, name)
            lines.append((path.relative_to(root).as_posix(), sha256_file(path)))
    # Sorted by the path's UTF-8 bytes, as `LC_ALL=C sort` orders them.
    lines.sort(key=lambda line: line[0].encode())
    return "".join(f"{digest}  {relative}\n" for relative, digest in lines)


def model_sha256(path: Path) -> str:
    """The pinnable sha256 of a model file or SavedModel folder."""
    if path.is_dir():
        return hashlib.sha256(tree_listing(path).encode()).hexdigest()
    return sha256_file(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelzoo-digest",
        description="Print the sha256 that pins a model for --sha256 / source.sha256: of a "
        "file's bytes (.pb, SavedModel .tar.gz), or of a SavedModel folder's canonical "
        "listing (sorted relative paths, each with its file's sha256).",
    )
    parser.add_argument("path", type=Path, help="a model file or a SavedModel folder")
    args = parser.parse_args(argv)
    try:
        print(model_sha256(args.path))
    except (OSError, RefusedGraph) as exc:
        print(f"modelzoo-digest: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`modelzoo-digest`: the sha256 users pin a SavedModel with, against coreutils' sha256sum."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.digest import model_sha256

pytestmark = pytest.mark.unit

# The listing written out with the shell tools a user has (the recipe in the module's doc).
SHELL = (
    "cd \"$1\" && find . -type f | sed 's|^\\./||' | LC_ALL=C sort "
    '| while read -r f; do sha256sum "$f"; done | sha256sum | cut -d" " -f1'
)


def _tree(root: Path) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "assets").mkdir()  # empty folders do not count
    (root / "saved_model.pb").write_bytes(b"graph bytes")
    (root / "variables/variables.index").write_bytes(b"index")
    (root / "variables/variables.data-00000-of-00001").write_bytes(bytes(range(256)) * 99)
    (root / "fingerprint.pb").write_bytes(b"fp")
    (root / "Zeta.txt").write_bytes(b"upper case sorts first in C order")
    return root


def _cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelzoo_models.digest", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_folder_digest_is_the_sha256sum_of_its_sorted_listing(tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    shell = subprocess.run(
        ["bash", "-c", SHELL, "-", str(root)], capture_output=True, text=True, check=True
    )
    assert model_sha256(root) == shell.stdout.strip()
    result = _cli(root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == shell.stdout.strip()


def test_a_file_digest_is_of_its_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b some archive")
    assert _cli(archive).stdout.strip() == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_any_change_changes_the_digest(tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    before = model_sha256(root)
    (root / "variables/variables.index").rename(root / "variables/variables.idx")
    renamed = model_sha256(root)
    (root / "fingerprint.pb").write_bytes(b"fq")
    assert len({before, renamed, model_sha256(root)}) == 3


def test_links_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    os.symlink("/etc/hostname", root / "variables/link")
    with pytest.raises(RefusedGraph, match="link"):
        model_sha256(root)
    result = _cli(root)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("modelzoo-digest: 'variables/link'"), result.stderr
    missing = _cli(tmp_path / "absent")
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1

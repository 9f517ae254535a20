"""Where built graphs live: a cache outside git, keyed by what produced them."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

_SOURCE_DIR = Path(__file__).resolve().parent
# Packages whose versions change the bytes of a built graph (TensorFlow also converts the
# `.tflite`; LiteRT's kernels set the difference its verification records).
_KEY_PACKAGES = ("tensorflow-cpu", "mtcnn", "numpy", "ai-edge-litert")
# Server code the build's verification runs beyond LiteRT itself: MTCNN's pyramid and NMS.
_KEY_SERVER_SOURCES = ("litert_mtcnn.py", "mtcnn_pipeline.py")


def cache_root() -> Path:
    base = os.environ.get("MODELZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelzoo"
    )
    return Path(base)


def build_key() -> str:
    """A digest of the build sources and the versions of the packages they read."""
    digest = hashlib.sha256()
    for path in sorted(_SOURCE_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".js", ".json", ".txt"}:
            digest.update(str(path.relative_to(_SOURCE_DIR)).encode())
            digest.update(path.read_bytes())
    server = importlib.util.find_spec("modelzoo_server")
    assert server is not None and server.origin is not None
    for name in _KEY_SERVER_SOURCES:
        digest.update(name.encode())
        digest.update((Path(server.origin).parent / name).read_bytes())
    for package in _KEY_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}=={version}".encode())
    return digest.hexdigest()[:16]


def model_dir() -> Path:
    """The folder that holds this build's graphs and `catalog.json`."""
    override = os.environ.get("MODELZOO_MODEL_DIR")
    return Path(override) if override else cache_root() / "models" / build_key()

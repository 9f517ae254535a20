"""Which graph to serve: a built zoo catalog entry, or a graph file plus a signature file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelzoo_server.signature import Signature


class EntryError(Exception):
    """The model to serve cannot be found or described; the message says which and why."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    path: Path
    sha256: str | None
    signature: Signature
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    batchable: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # licence, origin: shown in metadata


def _from_record(record: dict[str, Any], path: Path, name: str, sha256: str | None) -> ModelEntry:
    signature_json = record.get("signature", record)
    try:
        signature = Signature.from_json(signature_json)
    except ValueError as exc:
        raise EntryError(str(exc)) from exc
    return ModelEntry(
        name=name,
        task=str(record.get("task", "tensor")),
        path=path,
        sha256=sha256,
        signature=signature,
        preprocessing=dict(record.get("preprocessing") or {}),
        labels=tuple(record.get("labels") or ()),
        batchable=bool(record.get("batchable", False)),
        info={k: record[k] for k in ("license", "origin") if k in record},
    )


def from_catalog(model_dir: Path, zoo: str, name: str | None = None) -> ModelEntry:
    catalog = model_dir / "catalog.json"
    try:
        records = json.loads(catalog.read_text())["models"]
    except FileNotFoundError as exc:
        raise EntryError(f"no zoo catalog at {catalog}: run `make models` first") from exc
    except (ValueError, KeyError) as exc:
        raise EntryError(f"zoo catalog {catalog} is malformed: {exc}") from exc
    by_name = {r["name"]: r for r in records}
    if zoo not in by_name:
        raise EntryError(f"unknown zoo entry {zoo!r}; this catalog has {', '.join(by_name)}")
    record = by_name[zoo]
    return _from_record(record, model_dir / record["file"], name or zoo, record.get("sha256"))


def from_files(graph: Path, signature_file: Path, name: str, sha256: str | None) -> ModelEntry:
    try:
        record = yaml.safe_load(signature_file.read_text())
    except OSError as exc:
        raise EntryError(f"cannot read signature file {signature_file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise EntryError(f"signature file {signature_file} is not JSON/YAML: {exc}") from exc
    if not isinstance(record, dict):
        raise EntryError(f"signature file {signature_file} must hold a mapping")
    return _from_record(record, graph, name, sha256 or record.get("sha256"))

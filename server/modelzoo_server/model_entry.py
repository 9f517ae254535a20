"""The one model this process serves: a built zoo catalog record, or a user's graph plus
its signature file (the same record without artifacts; see modelzoo_models.contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelzoo_models.contract import (
    CATALOG_FILE,
    GRAPHDEF,
    Artifact,
    ModelRecord,
    Preprocessing,
    RecordError,
)
from modelzoo_server.signature import Signature


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the served name (V2 model name, metric label), not always the record's
    record: ModelRecord
    path: Path
    sha256: str | None
    signature: Signature
    # Where the record's artifacts lie: beside the graph for a zoo entry, in the prepare
    # step's folder for a user's graph (modelzoo_models.prepared).
    artifact_dir: Path | None = None

    @classmethod
    def of(
        cls,
        record: ModelRecord,
        path: Path,
        name: str,
        sha256: str | None,
        artifact_dir: Path | None = None,
    ) -> ModelEntry:
        return cls(name, record, path, sha256, Signature.from_record(record), artifact_dir)

    def artifact_path(self, artifact: Artifact) -> Path:
        return (self.artifact_dir or self.path.parent) / artifact.file

    @property
    def task(self) -> str:
        return self.record.task

    @property
    def preprocessing(self) -> Preprocessing:
        return self.record.preprocessing

    @property
    def labels(self) -> tuple[str, ...]:
        return self.record.labels

    @property
    def batchable(self) -> bool:
        return self.record.batchable

    @property
    def info(self) -> dict[str, Any]:
        """Licence, origin and notes: shown in the V2 metadata."""
        fields = {"license": self.record.license, "origin": dict(self.record.origin)}
        return {k: v for k, v in {**fields, "notes": dict(self.record.notes)}.items() if v}


def from_catalog(model_dir: Path, zoo: str, name: str | None = None) -> ModelEntry:
    catalog = model_dir / CATALOG_FILE
    try:
        records = json.loads(catalog.read_text())["models"]
    except FileNotFoundError as exc:
        raise RecordError(f"no zoo catalog at {catalog}: run `make models` first") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"zoo catalog {catalog} is malformed: {exc}") from exc
    by_name = {r.get("name"): r for r in records if isinstance(r, dict)}
    if zoo not in by_name:
        known = ", ".join(str(n) for n in by_name)
        raise RecordError(f"unknown zoo entry {zoo!r}; this catalog has {known}")
    record = ModelRecord.from_json(by_name[zoo])
    graph = record.artifact(GRAPHDEF)
    if graph is None:
        raise RecordError(f"zoo entry {zoo!r} has no {GRAPHDEF} artifact in {catalog}")
    return ModelEntry.of(record, model_dir / graph.file, name or zoo, graph.sha256)


def from_files(graph: Path, signature_file: Path, name: str, sha256: str | None) -> ModelEntry:
    try:
        text = signature_file.read_text()
        # JSON first: YAML 1.1 reads a JSON number such as 1e-05 as a string.
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"signature file {signature_file} is not JSON: {exc}") from exc
    except OSError as exc:
        raise RecordError(f"cannot read signature file {signature_file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RecordError(f"signature file {signature_file} is not JSON/YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"signature file {signature_file} must hold a mapping")
    record = ModelRecord.from_json(data, name=name)
    return ModelEntry.of(record, graph, name, sha256 or data.get("sha256"))

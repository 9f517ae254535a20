"""The prepare step's record of a user's graph: which runtime serves it, and why.

`modelzoo-prepare --prepared DIR` (a pod's `prepare-model` init container, or
`modelzoo-server --graph` itself before it loads) writes into DIR, named after the graph
(`model.pb`, `model.tar.gz` or a folder `model` → `model`):

    model.prepared.json  the record: a ModelRecord as in the zoo's catalog. Its signature
                         is the one the graph is served with; its `artifacts` are files in
                         DIR: the verified `tflite` (sha256, Verification) when the graph
                         converted, and for a SavedModel the frozen `graphdef` it was
                         converted from; without a `tflite`, `notes.tflite` says why
                         ("not converted: …"); `origin` gains what it was prepared from
                         (`provenance`), so a record of another graph is never served.
    model.tflite         when the graph converted
    model.frozen.pb      for a SavedModel (with model.frozen.json, its signature file)

The server reads the record (`modelzoo-server --prepared DIR`) and converts nothing
itself. No TensorFlow here: a server on LiteRT imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from modelzoo_models.contract import (
    LITERT,
    TENSORFLOW,
    TFLITE,
    ModelRecord,
    RecordError,
    outcome_line,
    sha256_file,
)
from modelzoo_models.digest import model_sha256
from modelzoo_models.saved_model import is_saved_model

RECORD_SUFFIX = ".prepared.json"


def stem(graph: Path) -> str:
    """The name the prepared files take after the graph's."""
    if graph.is_dir():
        return graph.name
    return Path(graph.name.removesuffix(".tar.gz")).stem


def record_path(folder: Path, graph: Path) -> Path:
    return folder / f"{stem(graph)}{RECORD_SUFFIX}"


def provenance(
    graph: Path, sha256: str | None, signature_file: Path | None, signature_name: str
) -> dict[str, str]:
    """What a record is prepared from: the graph's name and sha256 (the pin when there is
    one, which the prepare step checks before it converts; else the graph's own digest),
    the signature file's sha256 and, for a SavedModel, the signature frozen."""
    made_from = {
        "prepared_from": graph.name,
        "prepared_sha256": (sha256 or model_sha256(graph)).lower(),
        "prepared_signature_sha256": sha256_file(signature_file) if signature_file else "",
    }
    if is_saved_model(graph):
        made_from["prepared_signature_name"] = signature_name
    return made_from


def matches(record: ModelRecord, made_from: Mapping[str, str]) -> bool:
    return all(record.origin.get(key) == value for key, value in made_from.items())


def write(record: ModelRecord, path: Path) -> None:
    """Atomically: a reader finds the old record or the new one, never half of one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> ModelRecord | None:
    """The record at `path`, None when there is none; RecordError when it is malformed."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RecordError(f"prepare record {path} is unreadable: {exc}") from exc
    return ModelRecord.from_json(data)


def outcome(record: ModelRecord) -> str:
    """The record's decision as one outcome line (contract.outcome_line)."""
    tflite = record.artifact(TFLITE)
    if tflite is not None and tflite.verified is not None:
        return outcome_line(LITERT, f"verified, {tflite.verified.summary()}")
    return outcome_line(TENSORFLOW, record.notes.get(TFLITE, "no verified .tflite"))

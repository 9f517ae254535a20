"""A user's `--graph` → the entry to serve, with the record the prepare step wrote for it.

The prepare step (modelzoo_models.prepare.prepare_graph) converts the graph to a
builtin-ops `.tflite`, verifies it, and records the outcome (modelzoo_models.prepared);
`runtimes.choose` then reads that record as it reads a zoo entry's catalog record. In a
pod the `prepare-model` init container has run it and `--prepared DIR` names its folder:
the server only reads. Started by hand without `--prepared`, the server runs
`modelzoo-prepare` first, as a child process writing into a temporary folder: the
conversion imports TensorFlow, which a server then running LiteRT must not hold for its
lifetime (hundreds of MiB), nor have its thread pools set by.

No prepare step at all for `--runtime tensorflow`, nor for a `tensor` model: the
verification feeds images through the task's preprocessing, and a tensor model has none.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from modelzoo_models import prepared
from modelzoo_models.contract import GRAPHDEF, TENSOR, TENSORFLOW, TFLITE, RecordError, Unservable
from modelzoo_models.saved_model import is_saved_model
from modelzoo_server.model_entry import ModelEntry, from_files
from modelzoo_server.saved_models import frozen_entry
from modelzoo_server.settings import Settings

log = logging.getLogger("modelzoo")
REFUSED = "modelzoo-prepare: refused: "


def graph_entry(settings: Settings) -> ModelEntry:
    """The entry for `settings.graph`; Unservable when it must not be served."""
    if settings.runtime == TENSORFLOW:
        return unprepared(settings, "not prepared: --runtime tensorflow")
    if _task(settings) == TENSOR:
        return unprepared(settings, "not prepared: the prepare step verifies image models only")
    if settings.prepared is not None:
        return read_prepared(settings, settings.prepared)
    return _prepare_here(settings)


def _task(settings: Settings) -> str:
    """The task the signature file names; a SavedModel's own signature makes a tensor model."""
    assert settings.graph is not None
    if settings.signature is None:
        return TENSOR
    return from_files(settings.graph, settings.signature, settings.name, settings.sha256).task


def unprepared(settings: Settings, why: str) -> ModelEntry:
    """The graph as TensorFlow serves it, with `why` as the record's note on the .tflite."""
    assert settings.graph is not None
    if is_saved_model(settings.graph):
        entry = frozen_entry(settings)
    else:
        assert settings.signature is not None
        entry = from_files(settings.graph, settings.signature, settings.name, settings.sha256)
    # A signature file may be a catalog record, whose artifacts lie beside another graph.
    record = replace(entry.record, artifacts=(), notes={**entry.record.notes, TFLITE: why})
    return ModelEntry.of(record, entry.path, entry.name, entry.sha256)


def read_prepared(settings: Settings, folder: Path) -> ModelEntry:
    """The entry the record in `folder` describes; RecordError when there is none for
    this graph and signature file."""
    assert settings.graph is not None
    path = prepared.record_path(folder, settings.graph)
    record = prepared.read(path)
    if record is None:
        raise RecordError(
            f"no prepare record {path}: run `modelzoo-prepare --prepared {folder}` first"
        )
    made_from = prepared.provenance(
        settings.graph, settings.sha256, settings.signature, settings.signature_name
    )
    if not prepared.matches(record, made_from):
        raise RecordError(
            f"prepare record {path} was made from another graph or signature file "
            f"(sha256 {record.origin.get('prepared_sha256', '?')[:12]}…, this graph "
            f"{made_from['prepared_sha256'][:12]}…): run modelzoo-prepare again"
        )
    frozen = record.artifact(GRAPHDEF)
    if frozen is not None:  # a SavedModel: TensorFlow serves the graph the step froze
        graph, sha256 = folder / frozen.file, frozen.sha256
    else:
        graph, sha256 = settings.graph, record.origin["prepared_sha256"]
    return ModelEntry.of(record, graph, settings.name, sha256, artifact_dir=folder)


def _prepare_here(settings: Settings) -> ModelEntry:
    assert settings.graph is not None
    work = Path(tempfile.mkdtemp(prefix="modelzoo-prepared-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    command = [sys.executable, "-m", "modelzoo_models.prepare", "--graph", str(settings.graph)]
    command += ["--signature-name", settings.signature_name, "--prepared", str(work)]
    if settings.signature is not None:
        command += ["--signature", str(settings.signature)]
    if settings.sha256:
        command += ["--sha256", settings.sha256]
    log.info("preparing %s: converting it to a .tflite and verifying it", settings.graph)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    refused = next((line for line in reversed(lines) if line.startswith(REFUSED)), None)
    if done.returncode == 2 and refused:
        raise Unservable(refused.removeprefix(REFUSED))
    if done.returncode != 0:
        # The converter itself crashed: TensorFlow still serves the graph, which it checks.
        last = lines[-1][:300] if lines else "no output"
        why = f"not prepared: modelzoo-prepare exited with {done.returncode}: {last}"
        return unprepared(settings, why)
    log.info("prepared in %.1fs: %s", time.perf_counter() - started, done.stdout.strip())
    return read_prepared(settings, work)

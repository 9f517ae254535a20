"""Builds the zoo's graphs into the cache and writes the built catalog."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from modelzoo_models.catalog import ENTRIES, Entry
from modelzoo_models.contract import CATALOG_FILE, GRAPHDEF, Artifact, ModelRecord, sha256_file
from modelzoo_models.prepare import NotConverted, prepare
from modelzoo_models.recipes import RecipeError
from modelzoo_server.model_entry import ModelEntry

Log = Callable[[str], None]


def _log(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def _build_one(entry: Entry, out_dir: Path, log: Log) -> dict:
    graph = out_dir / f"{entry.name}.pb"
    meta = out_dir / f"{entry.name}.meta.json"
    if graph.exists() and meta.exists():
        cached = json.loads(meta.read_text())
        if all((out_dir / a["file"]).exists() for a in cached.get("artifacts", [])):
            log(f"{entry.name}: cached ({graph.stat().st_size / 1e6:.1f} MB)")
            return cached
    module = importlib.import_module(f"modelzoo_models.recipes.{entry.recipe}")
    started = time.monotonic()
    log(f"{entry.name}: building from {entry.origin['package']} {entry.origin['version']}")
    # Unique per process: two builds of the same folder (parallel test runs) never mix.
    tmp = graph.with_suffix(f".pb.{os.getpid()}.tmp")
    extra = module.build(entry, tmp, lambda m: log(f"{entry.name}: {m}")) or {}
    os.replace(tmp, graph)
    artifact = Artifact(GRAPHDEF, graph.name, sha256_file(graph))
    log(f"{entry.name}: built in {time.monotonic() - started:.1f}s, sha256 {artifact.sha256[:12]}…")
    record = _prepare(entry, entry.record(**extra, artifacts=(artifact,)), out_dir, log).to_json()
    meta_tmp = meta.with_suffix(f".json.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(meta_tmp, meta)
    return record


def _prepare(entry: Entry, record: ModelRecord, out_dir: Path, log: Log) -> ModelRecord:
    """Add the verified `.tflite` to the record, or a note that says why there is none."""
    graph = record.artifact(GRAPHDEF)
    assert graph is not None
    model = ModelEntry.of(record, out_dir / graph.file, record.name, graph.sha256)
    started = time.monotonic()
    # A recipe whose graph does not convert whole brings its own step (mtcnn: its parts).
    step = getattr(
        importlib.import_module(f"modelzoo_models.recipes.{entry.recipe}"), "prepare", prepare
    )
    try:
        tflite = step(model, out_dir / f"{entry.name}.tflite", entry.tflite_tolerance)
    except NotConverted as exc:
        log(f"{entry.name}: no .tflite: {exc}")
        return replace(record, notes={**record.notes, "tflite": f"not converted: {exc}"})
    assert tflite.verified is not None
    log(
        f"{entry.name}: .tflite verified in {time.monotonic() - started:.1f}s, max abs diff "
        f"{tflite.verified.max_abs_diff:.2g} (tolerance {tflite.verified.tolerance:g}), "
        f"sha256 {tflite.sha256[:12]}…"
    )
    return replace(record, artifacts=(*record.artifacts, tflite))


def build(out_dir: Path, names: Iterable[str] | None = None, log: Log = _log) -> Path:
    """Build the named entries (all by default) and (re)write `catalog.json`."""
    wanted = list(names) if names else list(ENTRIES)
    unknown = [n for n in wanted if n not in ENTRIES]
    if unknown:
        raise RecipeError(f"unknown zoo entry: {', '.join(unknown)} (known: {', '.join(ENTRIES)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(wanted, 1):
        log(f"[{index}/{len(wanted)}] {name}")
        _build_one(ENTRIES[name], out_dir, log)
    # The catalog lists every entry built so far in this folder, in catalog order.
    records = [
        json.loads((out_dir / f"{n}.meta.json").read_text())
        for n in ENTRIES
        if (out_dir / f"{n}.meta.json").exists() and (out_dir / f"{n}.pb").exists()
    ]
    catalog = out_dir / CATALOG_FILE
    tmp = catalog.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"models": records}, indent=2, sort_keys=True))
    os.replace(tmp, catalog)
    return catalog

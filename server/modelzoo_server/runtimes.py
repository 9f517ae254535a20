"""Which runtime serves the model, and loading it there.

LiteRT runs a record's verified `.tflite` (builtin ops, XNNPACK on CPU) without
TensorFlow in the process; TensorFlow runs the graph itself, for graphs that do not
convert and for GPUs. `auto` takes LiteRT whenever the record has a verified `.tflite`.
TensorFlow is imported only inside the graph runtime's calls and LiteRT only when
chosen, so a LiteRT server never loads TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from modelzoo_models.contract import AUTO, LITERT, MTCNN_NETS, TENSORFLOW, TFLITE, RecordError
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import LoadLimits, load_graph
from modelzoo_server.signature import FeedLimits


class Runtime(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name), run the model, return outputs by public name."""
        ...


def choose(entry: ModelEntry, wanted: str) -> str:
    """The runtime for this entry; RecordError when LiteRT is asked for and has nothing to run."""
    tflite = entry.record.artifact(TFLITE)
    if wanted == AUTO:
        return LITERT if tflite is not None else TENSORFLOW
    if wanted == LITERT and tflite is None:
        why = entry.record.notes.get(TFLITE, "the record lists no verified .tflite artifact")
        raise RecordError(f"--runtime litert: model {entry.name!r} has no .tflite ({why})")
    return wanted


def reason(entry: ModelEntry, wanted: str, runtime: str) -> str:
    """Why `choose` gave `runtime`, in words for the start-up log."""
    if wanted != AUTO:
        return f"--runtime {wanted}"
    tflite = entry.record.artifact(TFLITE)
    if runtime == LITERT and tflite is not None and tflite.verified is not None:
        return f"verified .tflite, {tflite.verified.summary()}"
    return entry.record.notes.get(TFLITE, "no verified .tflite")


def runs_pipeline(entry: ModelEntry) -> bool:
    """On LiteRT, the entry runs as a pipeline of networks (mtcnn), not one interpreter."""
    tflite = entry.record.artifact(TFLITE)
    return tflite is not None and tflite.pipeline == MTCNN_NETS


def import_runtime(runtime: str) -> None:
    """Import the runtime's library (TensorFlow takes seconds, LiteRT a fraction), so that
    the start-up log can tell that time from the model's own load."""
    importlib.import_module("modelzoo_server.litert" if runtime == LITERT else "tensorflow")


def load_runtime(
    entry: ModelEntry,
    runtime: str,
    limits: LoadLimits = LoadLimits(),
    feed_limits: FeedLimits = FeedLimits(),
    threads: int = 1,
    interpreters: int = 1,
    lone_threads: int = 0,
) -> Runtime:
    """Check and load the entry's file for `runtime` (blocking); RefusedGraph if refused.
    `threads`, `interpreters`, `lone_threads`: LiteRT's pool (litert.Pool) of interpreters,
    or of pipelines for a pipeline model (Settings.litert_members);
    TensorFlow takes its threads from configure_threads."""
    if runtime == LITERT:
        from modelzoo_server.litert import load_tflite

        tflite = entry.record.artifact(TFLITE)
        assert tflite is not None, "choose() refuses LiteRT without a .tflite"
        path = entry.artifact_path(tflite)
        if runs_pipeline(entry):
            from modelzoo_server.litert import read_tflite
            from modelzoo_server.litert_mtcnn import LiteMtcnn

            data = read_tflite(path, tflite.sha256, limits.max_file_bytes)
            return LiteMtcnn(
                data, entry.signature, feed_limits, threads, interpreters, lone_threads
            )
        return load_tflite(
            path,
            entry.signature,
            tflite.sha256,
            feed_limits,
            threads,
            limits.max_file_bytes,
            interpreters,
            lone_threads,
        )
    return load_graph(entry.path, entry.signature, entry.sha256, limits, feed_limits)

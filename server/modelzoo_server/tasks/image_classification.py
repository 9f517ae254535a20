"""Image classification: one task for every classifier in the zoo.

The record's `preprocessing` (modelzoo_models.contract.Preprocessing) says how to feed
the graph: channels RGB, BGR or GRAY, a required `size`, one of the resizes (the TF.js
ones computed like TF.js's CPU kernel, see resize.py), then `v * scale + offset`.

The feed is float32 `[1, H, W, C]` for the graph's first input, so that requests can
be stacked along the batch dimension. The class scores are the output named
`probabilities` (else the first output), one row per image, indexed like `labels`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from modelzoo_models.contract import IMAGE_CLASSIFICATION, RecordError
from modelzoo_server.errors import InvalidInput
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.tasks.base import Task, line_width
from modelzoo_server.tasks.preprocess import to_pixels

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int


class ImageClassification(Task):
    name = IMAGE_CLASSIFICATION

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        if entry.preprocessing.size is None:
            raise RecordError(f"{entry.name}: a classifier needs preprocessing.size")
        if not entry.labels:
            raise RecordError(f"{entry.name}: a classifier needs labels in its catalog entry")
        outputs = [spec.name for spec in entry.signature.outputs]
        self.input_name = entry.signature.inputs[0].name
        self.output_name = "probabilities" if "probabilities" in outputs else outputs[0]

    def options(self, params: Mapping[str, str]) -> ClassifyOptions:
        raw = params.get("top_k")
        count = len(self.entry.labels)
        if raw is None or raw == "":
            return ClassifyOptions(top_k=min(DEFAULT_TOP_K, count))
        try:
            top_k = int(str(raw).strip())
        except ValueError as exc:
            raise InvalidInput(f"top_k must be a whole number, got {str(raw)[:40]!r}") from exc
        if not 1 <= top_k <= count:
            raise InvalidInput(f"top_k must be between 1 and {count}, got {top_k}")
        return ClassifyOptions(top_k=top_k)

    def preprocess(self, image: np.ndarray, options: ClassifyOptions) -> dict[str, np.ndarray]:
        return {self.input_name: to_pixels(image, self.entry.preprocessing)[None]}

    def postprocess(
        self, outputs: Mapping[str, np.ndarray], size: tuple[int, int], options: ClassifyOptions
    ) -> dict[str, Any]:
        scores = np.asarray(outputs[self.output_name], dtype=np.float32).reshape(-1)
        if scores.shape[0] != len(self.entry.labels):
            raise ValueError(
                f"model {self.entry.name!r} gave {scores.shape[0]} scores for "
                f"{len(self.entry.labels)} labels"
            )
        # Highest score first; ties keep the lower class id first (stable sort).
        order = np.argsort(-scores, kind="stable")[: options.top_k]
        return {
            "predictions": [
                {
                    "label": self.entry.labels[i],
                    "score": round(float(scores[i]), 6),
                    "class_id": int(i),
                }
                for i in order
            ]
        }

    def draw(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        annotated = image.convert("RGB")
        pen = ImageDraw.Draw(annotated, "RGBA")
        font_size = max(12, round(max(image.size) / 40))
        try:
            font = ImageFont.load_default(size=font_size)
        except TypeError:  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        margin = line_width(image) * 2
        lines = [
            f"{p['label'].split(',')[0]}  {p['score'] * 100:.1f}%" for p in result["predictions"]
        ]
        y = margin
        for index, text in enumerate(lines[:5]):
            left, top, right, bottom = pen.textbbox((margin, y), text, font=font)
            pen.rectangle(
                (left - margin // 2, top - margin // 2, right + margin // 2, bottom + margin // 2),
                fill=(0, 0, 0, 160),
            )
            colour = (255, 255, 0) if index == 0 else (255, 255, 255)
            pen.text((margin, y), text, font=font, fill=colour)
            y = bottom + margin
        return annotated

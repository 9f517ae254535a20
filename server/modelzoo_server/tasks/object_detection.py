"""Object detection with graphs that decode their own heads (CenterNet from @vladmandic/human).

The record's `preprocessing` (modelzoo_models.contract.Preprocessing) feeds the graph; a
detector needs `size` (CenterNet: 512×512 with "bilinear-legacy", TF.js's
`tf.image.resizeBilinear`, what human feeds the model); `defaults` holds
`score_threshold`, `iou_threshold` and `max_detections`.

The graph's first output is [1, N, 6]: x1, y1, x2, y2 in input pixels, score, class
index. Decoding follows human's `src/object/centernet.ts`: class-agnostic greedy NMS with
TF.js's rules (candidates score > threshold, best first, ties to the lower index; a
candidate goes when its IoU with a kept box is >= iou_threshold), rows whose class is
NaN dropped, boxes scaled back to the original picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from modelzoo_models.contract import OBJECT_DETECTION, RecordError
from modelzoo_server.errors import InvalidInput
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.tasks.base import Task, line_width, number_option
from modelzoo_server.tasks.preprocess import to_pixels

PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
)  # fmt: skip


@dataclass(frozen=True)
class DetectOptions:
    score_threshold: float
    iou_threshold: float
    max_detections: int


def _iou(boxes: np.ndarray, i: int, j: int) -> float:
    """TF.js's intersectionOverUnion on (y1, x1, y2, x2) rows, in doubles."""
    a, b = boxes[i].astype(np.float64), boxes[j].astype(np.float64)
    ay1, ay2 = min(a[0], a[2]), max(a[0], a[2])
    ax1, ax2 = min(a[1], a[3]), max(a[1], a[3])
    by1, by2 = min(b[0], b[2]), max(b[0], b[2])
    bx1, bx2 = min(b[1], b[3]), max(b[1], b[3])
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter = max(min(ay2, by2) - max(ay1, by1), 0.0) * max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    return float(inter / (area_a + area_b - inter))


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, max_output: int, iou_threshold: float, threshold: float
) -> list[int]:
    """tf.image.nonMaxSuppression as TF.js computes it (hard NMS); boxes are (y1, x1, y2, x2)."""
    candidates = [i for i in range(len(scores)) if scores[i] > threshold]
    candidates.sort(key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in candidates:
        if len(kept) >= max_output:
            break
        if all(_iou(boxes, i, k) < iou_threshold for k in kept):
            kept.append(i)
    return kept


class ObjectDetection(Task):
    name = OBJECT_DETECTION

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        if entry.preprocessing.size is None:
            raise RecordError(f"{entry.name}: a detector needs preprocessing.size")
        self.height, self.width = entry.preprocessing.size
        self.defaults = dict(entry.preprocessing.defaults)
        self.input_name = entry.signature.inputs[0].name
        self.output_name = entry.signature.outputs[0].name

    def options(self, params: Mapping[str, str]) -> DetectOptions:
        max_default = int(self.defaults.get("max_detections", 100))
        maximum = number_option(params, "max_detections", max_default, 1, 1000)
        if maximum != int(maximum):
            raise InvalidInput(f"max_detections must be a whole number, got {maximum:g}")
        return DetectOptions(
            score_threshold=number_option(
                params, "score_threshold", float(self.defaults.get("score_threshold", 0.2)), 0, 1
            ),
            iou_threshold=number_option(
                params, "iou_threshold", float(self.defaults.get("iou_threshold", 0.4)), 0, 1
            ),
            max_detections=int(maximum),
        )

    def preprocess(self, image: np.ndarray, options: DetectOptions) -> dict[str, np.ndarray]:
        return {self.input_name: to_pixels(image, self.entry.preprocessing)[None]}

    def postprocess(
        self, outputs: Mapping[str, np.ndarray], size: tuple[int, int], options: DetectOptions
    ) -> dict[str, Any]:
        rows = np.asarray(outputs[self.output_name], dtype=np.float32).reshape(-1, 6)
        yxyx = rows[:, [1, 0, 3, 2]]
        kept = non_max_suppression(
            yxyx,
            rows[:, 4],
            options.max_detections,
            options.iou_threshold,
            options.score_threshold,
        )
        width, height = size
        sx, sy = width / self.width, height / self.height
        detections = []
        for i in kept:
            x1, y1, x2, y2, score, cls = (float(v) for v in rows[i])
            if np.isnan(cls):
                continue
            class_id = int(cls)
            label = (
                self.entry.labels[class_id]
                if 0 <= class_id < len(self.entry.labels)
                else str(class_id)
            )
            box = [
                min(max(x1 * sx, 0.0), width),
                min(max(y1 * sy, 0.0), height),
                min(max(x2 * sx, 0.0), width),
                min(max(y2 * sy, 0.0), height),
            ]
            detections.append(
                {
                    "box": [round(v, 2) for v in box],
                    "score": round(score, 5),
                    "label": label,
                    "class_id": class_id,
                }
            )
        return {"detections": detections}

    def draw(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        annotated = image.convert("RGB")
        pen = ImageDraw.Draw(annotated)
        width = line_width(image)
        try:
            font = ImageFont.load_default(size=max(12, 6 * width))
        except TypeError:  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        for found in result["detections"]:
            color = PALETTE[found["class_id"] % len(PALETTE)]
            x1, y1, x2, y2 = found["box"]
            pen.rectangle((x1, y1, x2, y2), outline=color, width=width)
            text = f"{found['label']} {found['score']:.2f}"
            left, top, right, bottom = pen.textbbox((x1, y1), text, font=font)
            lift = min(bottom - top + 2 * width, y1)  # above the box, inside if at the top
            pen.rectangle((left, top - lift, right + 2 * width, bottom - lift), fill=color)
            pen.text((x1 + width, y1 - lift), text, fill=(0, 0, 0), font=font)
        return annotated

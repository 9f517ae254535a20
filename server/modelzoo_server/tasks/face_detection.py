"""Face detection with the MTCNN graph: the original demo's interface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from modelzoo_models.contract import FACE_DETECTION
from modelzoo_server.tasks.base import Task, line_width, number_option
from modelzoo_server.tasks.preprocess import to_pixels

GREEN = (0, 255, 0)


@dataclass(frozen=True)
class FaceOptions:
    min_size: float
    thresholds: tuple[float, float, float]
    factor: float


class FaceDetection(Task):
    name = FACE_DETECTION

    def options(self, params: Mapping[str, str]) -> FaceOptions:
        defaults = self.entry.preprocessing.defaults
        thresholds = tuple(defaults.get("thresholds", (0.6, 0.7, 0.8)))
        return FaceOptions(
            # The seed demo's name: the smallest face to find, in pixels.
            min_size=number_option(
                params, "detection_threshold", float(defaults.get("min_size", 20.0)), 8, 4096
            ),
            thresholds=(
                thresholds[0],
                thresholds[1],
                number_option(params, "score_threshold", thresholds[2], 0.0, 1.0),
            ),
            factor=float(defaults.get("factor", 0.709)),
        )

    def preprocess(self, image: np.ndarray, options: FaceOptions) -> dict[str, np.ndarray]:
        return {
            "input": to_pixels(image, self.entry.preprocessing),
            "min_size": np.float32(options.min_size),
            "thresholds": np.asarray(options.thresholds, dtype=np.float32),
            "factor": np.float32(options.factor),
        }

    def postprocess(
        self, outputs: Mapping[str, np.ndarray], size: tuple[int, int], options: FaceOptions
    ) -> dict[str, Any]:
        detections = []
        for box, prob, marks in zip(
            outputs["box"], outputs["prob"], outputs["landmarks"], strict=True
        ):
            y1, x1, y2, x2 = (float(v) for v in box)
            # The graph gives y1..y5 then x1..x5 (see modelzoo_models/recipes/mtcnn.py): left eye,
            # right eye, nose, mouth left, mouth right.
            points = [[float(marks[i + 5]), float(marks[i])] for i in range(5)]
            detections.append(
                {
                    "box": [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)],
                    "score": round(float(prob), 5),
                    "landmarks": [[round(x, 2), round(y, 2)] for x, y in points],
                }
            )
        return {"detections": detections}

    def draw(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        annotated = image.copy()
        pen = ImageDraw.Draw(annotated)
        width = line_width(image)
        for face in result["detections"]:
            pen.rectangle(face["box"], outline=GREEN, width=width)
        return annotated

"""The independent reference for face detection: the `mtcnn` package's own detect_faces."""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def _detector():
    from mtcnn import MTCNN

    return MTCNN()


def reference_faces(rgb: np.ndarray) -> list[dict]:
    """[{box: [x1, y1, x2, y2], score}] as the package finds them (default settings)."""
    faces = _detector().detect_faces(np.ascontiguousarray(rgb))
    return [
        {
            "box": [f["box"][0], f["box"][1], f["box"][0] + f["box"][2], f["box"][1] + f["box"][3]],
            "score": float(f["confidence"]),
            "keypoints": f["keypoints"],
        }
        for f in faces
    ]


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

"""The record's `Preprocessing` applied to a decoded image: one meaning per key, every task.

channels → resize to `size` (when given) → `v * scale + offset`; see
modelzoo_models.contract.Preprocessing for what each value means.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from modelzoo_models.contract import Preprocessing
from modelzoo_server.tasks.resize import resize_bilinear


def _channels(rgb: np.ndarray, channels: str) -> np.ndarray:
    if channels == "GRAY":
        return np.asarray(Image.fromarray(rgb).convert("L"))  # H×W
    if channels == "BGR":
        return rgb[..., ::-1]
    return rgb


def to_pixels(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """An RGB uint8 H×W×3 array → float32 h×w×C, as the graph's first input takes it."""
    pixels = _channels(np.ascontiguousarray(image, dtype=np.uint8), prep.channels)
    if prep.size is None:
        out = pixels.astype(np.float32)
    elif prep.resize == "bilinear":
        height, width = prep.size
        picture = Image.fromarray(np.ascontiguousarray(pixels))
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        out = np.asarray(picture, dtype=np.float32)
    else:
        height, width = prep.size
        corners = prep.resize == "bilinear-align-corners"
        out = resize_bilinear(pixels, height, width, align_corners=corners)
    if out.ndim == 2:
        out = out[..., None]
    # An identity transform is skipped: MTCNN takes whole photos at their own size.
    if (prep.scale, prep.offset) != (1.0, 0.0):
        out = out * np.float32(prep.scale) + np.float32(prep.offset)
    return np.ascontiguousarray(out, dtype=np.float32)

"""Bilinear resizing the way TF.js's CPU kernel does it, so inputs match the originals bit for bit.

Output pixel i reads the source at `i * scale`, where scale is `in / out`
(TF.js's default, "legacy") or `(in - 1) / (out - 1)` (align corners). No
half-pixel offset and no antialiasing; positions and blends are computed in
float64, like the kernel's JavaScript, and stored as float32.
"""

from __future__ import annotations

import numpy as np


def _axis(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, ...]:
    ratio = n_in / n_out
    if align_corners:
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    source = np.arange(n_out, dtype=np.float64) * ratio
    low = np.floor(source).astype(np.intp)
    high = np.minimum(np.ceil(source).astype(np.intp), n_in - 1)
    return low, high, source - low


def resize_bilinear(
    pixels: np.ndarray, height: int, width: int, align_corners: bool = False
) -> np.ndarray:
    """H×W or H×W×C values → height×width(×C) float32."""
    flat = pixels.ndim == 2
    if flat:
        pixels = pixels[..., None]
    in_h, in_w = pixels.shape[:2]
    y0, y1, fy = _axis(in_h, height, align_corners)
    x0, x1, fx = _axis(in_w, width, align_corners)
    # Along each needed source row first (the kernel's `top` and `bottom`, same doubles),
    # then between the two rows: a fraction of the work of four full-size gathers.
    rows = np.unique(np.concatenate([y0, y1]))
    picked = pixels[rows]
    left = picked[:, x0].astype(np.float64)
    across = picked[:, x1].astype(np.float64)
    across -= left
    across *= fx[None, :, None]
    across += left
    top = across[np.searchsorted(rows, y0)]
    bottom = across[np.searchsorted(rows, y1)]
    bottom -= top
    bottom *= fy[:, None, None]
    bottom += top
    out = bottom.astype(np.float32)
    return out[..., 0] if flat else out

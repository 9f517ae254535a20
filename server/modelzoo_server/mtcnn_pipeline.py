"""MTCNN's detector pipeline in numpy, around three networks that the caller supplies.

It mirrors `_detect` of the zoo recipe (`modelzoo_models/recipes/mtcnn.py`), the frozen
TensorFlow graph, step for step and dtype for dtype: the image pyramid, PNet on every
level, the package's (non-greedy) NMS per level and across levels, squaring, RNet and
ONet on bilinear crops, the box adjustment, landmarks, the final NMS and the clipping.
Box arithmetic runs in float64, scores and offsets in float32, `CropAndResize` follows
TensorFlow's CPU kernel operation for operation, and `ResizeArea` has the kernel's weights
but sums them as matrix products (a float32 rounding apart, far faster than per-tap
gathers), so the results match the graph's up to the networks' own rounding. The networks
come in through `Nets` (LiteRT in the server), so this module needs numpy only, never
TensorFlow.

`detect` has the graph's contract: BGR float32 [H, W, 3] in 0..255 → "box" [N, 4]
(y1, x1, y2, x2), "prob" [N] (descending) and "landmarks" [N, 10] (y1..y5, x1..x5), all
float32 in input pixels; an image with a side under 12 px, or without a face, gives
N = 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import numpy as np

# These mirror the recipe's constants (tests check that they are equal); the recipe itself
# cannot be imported here, as it needs TensorFlow.
_PNET_CELL, _PNET_STRIDE = 12, 2
_PNET_MIN_SIDE = 11  # the smallest level PNet gives an output for: smaller ones are skipped
_NMS_PNET_SCALE, _NMS_PNET_ALL, _NMS_RNET, _NMS_ONET = 0.5, 0.7, 0.7, 0.7
_NMS_CHUNK = 512  # rows of the pairwise-overlap matrix computed at a time
_MIN_FACE, _MAX_LEVELS = 3.0, 64  # bounds on one request's work: min_size floor, levels
_RNET_SIZE, _ONET_SIZE = 24, 48
_RESIZE_SPAN = 16  # input pixels per block of ResizeArea's matrix products (measured)


class Nets(Protocol):
    """P-, R- and O-Net, float32 in and out (normalised RGB, as `detect` prepares it)."""

    def pnet(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[1, h, w, 3] → (regression [1, h', w', 4], probability [1, h', w', 2])."""
        ...

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 24, 24, 3] → (regression [N, 4], probability [N, 2]); N is never 0."""
        ...

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[N, 48, 48, 3] → (regression [N, 4], landmarks [N, 10], probability [N, 2])."""
        ...


def detect(
    nets: Nets, image: np.ndarray, min_size: float, thresholds: np.ndarray, factor: float
) -> dict[str, np.ndarray]:
    """Faces in a BGR float32 [H, W, 3] image (0..255), as the zoo graph finds them."""
    image = np.asarray(image, np.float32)
    thresholds = np.asarray(thresholds, np.float32)
    # The graph's feeds are float32: round the parameters the same way.
    min_size, factor = np.float32(min_size), np.float32(factor)
    height, width = image.shape[:2]
    normalized = _normalize(image)
    boxes = _pnet_stage(nets, normalized, min_size, factor, thresholds[0])
    boxes = _rnet_stage(nets, normalized, boxes, thresholds[1])
    boxes, scores, landmarks = _onet_stage(nets, normalized, boxes, thresholds[2])
    # limit_bboxes (fit_to_image=True): x in [0, W-1], y in [0, H-1]; landmarks untouched.
    x1, y1, x2, y2 = boxes.T
    x1, x2 = (np.clip(v, 0.0, width - 1.0) for v in (x1, x2))
    y1, y2 = (np.clip(v, 0.0, height - 1.0) for v in (y1, y2))
    box = np.stack([y1, x1, y2, x2], axis=1).astype(np.float32)
    return {"box": box, "prob": scores, "landmarks": landmarks}


def _normalize(image: np.ndarray) -> np.ndarray:
    """standarize_batch + normalize_images on RGB: (BGR[::-1] - 127.5) / 128, as float32.

    A channel at a time (an inner loop over whole rows rather than over 3 values), and
    × 1/128, which is exactly / 128.
    """
    normalized = np.empty(image.shape, np.float32)
    depth = image.shape[2]
    for channel in range(depth):
        source = image[:, :, depth - 1 - channel]
        np.subtract(source, np.float32(127.5), out=normalized[:, :, channel])
    normalized *= np.float32(1.0 / 128.0)
    return normalized


# -- stages ----------------------------------------------------------------------------------


def _pnet_stage(nets: Nets, normalized, min_size, factor, threshold) -> np.ndarray:
    """StagePNet: proposals from every pyramid level, NMS per level and across, squared."""
    height, width = normalized.shape[:2]
    boxes, scores = [np.zeros((0, 4))], [np.zeros(0, np.float32)]
    for scale, level_h, level_w in zip(*_pyramid(height, width, min_size, factor), strict=True):
        found, score = _pnet_level(nets, normalized, scale, level_h, level_w, threshold)
        boxes.append(found)
        scores.append(score)
    boxes, _ = _sorted_nms(np.concatenate(boxes), np.concatenate(scores), _NMS_PNET_ALL, "union")
    return _square(boxes)


def _pyramid(height: int, width: int, min_size, factor):
    """build_scale_pyramid (float64), and each level's size; levels under 11 px are dropped."""
    factor = np.float64(factor)
    # round(-(log(min_dim / 12) / log(factor) + 1)) scales, half to even; a factor of 0, 1
    # or below 0, or an empty image, gives inf or NaN here, which count 64 or 0 as in TF.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.float64(min(height, width)) / _PNET_CELL) / np.log(factor)
    count = np.round(-(ratio + 1.0))
    count = 0 if np.isnan(count) else int(np.clip(count, 0.0, _MAX_LEVELS))
    min_size = np.maximum(np.float64(min_size), _MIN_FACE)
    scales = (_PNET_CELL / min_size) * np.power(factor, np.arange(count, dtype=np.float64))
    # tf.image.resize(images, shape * scale) truncates the float size.
    heights, widths = np.floor(height * scales), np.floor(width * scales)
    usable = (heights >= _PNET_MIN_SIDE) & (widths >= _PNET_MIN_SIDE)
    return scales[usable], heights[usable].astype(int), widths[usable].astype(int)


def _pnet_level(nets: Nets, normalized, scale, height: int, width: int, threshold):
    """One pyramid level: resize, PNet, windows over the threshold, NMS 0.5."""
    regression, probability = nets.pnet(_resize_area(normalized, height, width)[None])
    face = np.asarray(probability, np.float32)[0, :, :, 1]
    y, x = np.nonzero(face > threshold)  # row-major, like tf.where
    score = face[y, x]
    reg = np.asarray(regression, np.float32)[0, y, x].astype(np.float64) * float(_PNET_CELL - 1)
    # generate_bounding_box: windows (2x+1, 2y+1, 2x+12, 2y+12) moved by 11 × regression.
    x, y = (x * _PNET_STRIDE).astype(np.float64), (y * _PNET_STRIDE).astype(np.float64)
    cell = float(_PNET_CELL)
    found = np.stack(
        [x + 1.0 + reg[:, 0], y + 1.0 + reg[:, 1], x + cell + reg[:, 2], y + cell + reg[:, 3]],
        axis=1,
    )
    order = _argsort_desc(score)
    found, score = found[order] / scale, score[order]  # upscale_bboxes
    keep = _nms_keep(found, _NMS_PNET_SCALE, "union")
    return found[keep], score[keep]


def _rnet_stage(nets: Nets, normalized, boxes: np.ndarray, threshold) -> np.ndarray:
    """StageRNet: refine the squared PNet boxes on 24×24 crops, NMS, square again."""
    if not len(boxes):
        return boxes
    offsets, probability = nets.rnet(_crops(normalized, boxes, _RNET_SIZE))
    scores = np.asarray(probability, np.float32)[:, 1]
    boxes = _adjust(boxes, offsets)
    keep = scores > threshold
    boxes, _ = _sorted_nms(boxes[keep], scores[keep], _NMS_RNET, "union")
    return _square(boxes)


def _onet_stage(nets: Nets, normalized, boxes: np.ndarray, threshold):
    """StageONet: 48×48 crops, landmarks, final boxes, NMS by the smaller area."""
    if not len(boxes):
        return np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros((0, 10), np.float32)
    offsets, points, probability = nets.onet(_crops(normalized, boxes, _ONET_SIZE))
    scores = np.asarray(probability, np.float32)[:, 1]
    # adjust_landmarks: float64 on the ONet input boxes, stored as float32.
    x1, y1, x2, y2 = (v[:, None] for v in boxes.T)
    w, h = x2 - x1 + 1.0, y2 - y1 + 1.0
    points = np.asarray(points, np.float32).astype(np.float64)
    xs = w * points[:, 0:5] + x1 - 1.0
    ys = h * points[:, 5:10] + y1 - 1.0
    landmarks = np.concatenate([ys, xs], axis=1).astype(np.float32)
    boxes = _adjust(boxes, offsets)
    keep = scores > threshold
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    order = _argsort_desc(scores)
    boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
    keep = _nms_keep(boxes, _NMS_ONET, "min")
    return boxes[keep], scores[keep], landmarks[keep]


# -- boxes -----------------------------------------------------------------------------------


def _argsort_desc(scores: np.ndarray) -> np.ndarray:
    """numpy's `argsort(scores)[::-1]` with a stable sort: ties keep the higher index first."""
    return np.argsort(scores, kind="stable")[::-1]


def _sorted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str):
    order = _argsort_desc(scores)
    boxes, scores = boxes[order], scores[order]
    keep = _nms_keep(boxes, threshold, method)
    return boxes[keep], scores[keep]


def _nms_keep(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """mtcnn.utils.bboxes.nms: keep box j unless some box i < j overlaps it above threshold.

    The same pairs and overlap arithmetic as the graph's, with fewer pairs looked at:
    boxes whose x ranges do not intersect have no overlap (the threshold is positive), so
    blocks of boxes in x1 order meet only the boxes that start before the block's boxes
    end. A pair that overlaps enough suppresses its later box in `boxes` order.
    """
    n = len(boxes)
    by_x = np.argsort(boxes[:, 0], kind="stable")
    x1, y1, x2, y2 = boxes[by_x].T
    area = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(n, bool)
    for start in range(0, n, _NMS_CHUNK):
        stop = min(start + _NMS_CHUNK, n)
        # First box in x1 order that starts at or after the block's rightmost end.
        reach = max(int(np.searchsorted(x1, x2[start:stop].max())), start + 1)
        rows, columns = slice(start, stop), slice(start + 1, reach)
        inter_x = np.minimum(x2[rows, None], x2[columns]) - np.maximum(x1[rows, None], x1[columns])
        inter_y = np.minimum(y2[rows, None], y2[columns]) - np.maximum(y1[rows, None], y1[columns])
        inter = np.maximum(inter_x, 0.0) * np.maximum(inter_y, 0.0)
        if method == "union":
            below = area[rows, None] + area[columns] - inter
        else:
            below = np.minimum(area[rows, None], area[columns])
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is NaN: no hit, as in TF
            hit = inter / below > threshold
        # Each pair once: row r (position start + r) with the columns after it.
        hit &= np.arange(start, stop)[:, None] < np.arange(start + 1, reach)
        r, c = np.nonzero(hit)
        suppressed[np.maximum(by_x[start + r], by_x[start + 1 + c])] = True
    return ~suppressed


def _square(boxes: np.ndarray) -> np.ndarray:
    """resize_to_square: grow the short side around the centre."""
    x1, y1, x2, y2 = boxes.T
    h, w = y2 - y1, x2 - x1
    side = np.maximum(w, h)
    x1 = x1 + w * 0.5 - side * 0.5
    y1 = y1 + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _adjust(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """adjust_bboxes as the package runs it: box + offset × (side + 1), in float32."""
    x1, y1, x2, y2 = boxes.T
    w = (x2 - x1 + 1.0).astype(np.float32)
    h = (y2 - y1 + 1.0).astype(np.float32)
    sizes = np.stack([w, h, w, h], axis=1)
    adjusted = boxes.astype(np.float32) + np.asarray(offsets, np.float32) * sizes
    return adjusted.astype(np.float64)


# -- image sampling --------------------------------------------------------------------------


def _crops(normalized: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """extract_patches: the boxes (x1, y1, x2, y2 pixels) as size × size bilinear crops.

    The graph also crops one spare patch and guards a 0-pixel image; neither is needed
    here (no empty batch reaches a net, and an empty image has no pyramid level).
    """
    height, width = normalized.shape[:2]
    x1, y1, x2, y2 = boxes.T
    relative = np.stack([y1 / height, x1 / width, y2 / height, x2 / width], axis=1)
    return _crop_and_resize(normalized, relative.astype(np.float32), size)


def _crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """tf.image.crop_and_resize (bilinear, extrapolation value 0) of one [H, W, C] float32
    image, with the arithmetic of TF's CPU kernel; boxes float32 [N, 4] normalised y1, x1,
    y2, x2, `size` > 1. Returns float32 [N, size, size, C].

    The four corner pixels of every sample are gathered from the flattened image, and the
    lerps run in place on [N, size, size · C] views (so that numpy's inner loops run over
    whole crop rows rather than over C values).
    """
    height, width, depth = image.shape
    count = len(boxes)
    top, bottom, y_lerp, y_inside = _crop_samples(boxes[:, 0], boxes[:, 2], height, size)
    left, right, x_lerp, x_inside = _crop_samples(boxes[:, 1], boxes[:, 3], width, size)
    flat = image.reshape(-1, depth)
    top, bottom = (top * width)[:, :, None], (bottom * width)[:, :, None]
    left, right = left[:, None, :], right[:, None, :]
    pixels = (count, size, size, depth)

    def gather(index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # The indices are in the image by construction: "clip" skips numpy's error path.
        gathered = np.take(flat, index, axis=0, mode="clip", out=out)
        return gathered.reshape(count, size, size * depth)

    x_lerp = np.repeat(x_lerp, depth, axis=1)[:, None, :]
    upper, other = gather(top + left), gather(top + right)
    other -= upper
    other *= x_lerp
    upper += other  # top_left + (top_right - top_left) * x_lerp
    lower = gather(bottom + left)
    other = gather(bottom + right, out=other.reshape(pixels))
    other -= lower
    other *= x_lerp
    lower += other
    lower -= upper
    lower *= y_lerp[:, :, None]
    upper += lower  # top + (bottom - top) * y_lerp
    crops = upper.reshape(pixels)
    inside = y_inside[:, :, None] & x_inside[:, None, :]
    if not inside.all():
        crops[~inside] = np.float32(0.0)
    return crops


def _crop_samples(start: np.ndarray, end: np.ndarray, extent: int, size: int):
    """Per box, the sample positions along one axis: the two neighbours (clamped into the
    image where the sample is outside it), the float32 lerp weight and whether it is inside."""
    last = np.float32(extent - 1)
    step = (end - start) * last / np.float32(size - 1)
    position = (start * last)[:, None] + np.arange(size, dtype=np.float32) * step[:, None]
    inside = (position >= 0) & (position <= last)
    position = np.where(inside, position, np.float32(0.0))
    low = np.floor(position)
    lerp = position - low
    return low.astype(np.intp), np.ceil(position).astype(np.intp), lerp, inside


def _resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """tf.raw_ops.ResizeArea (align_corners=False) of one C-contiguous float32 [H, W, C]
    image to [height, width, C] float32: each output pixel is the mean of the input area it
    covers, the same weights as TensorFlow's kernel (`_area_taps`), summed by two banded
    matrix products: along y on the image's rows, then along x on the rows of that result.

    The sums run in BLAS order rather than the kernel's tap order, and the 1 / (scale_y ·
    scale_x) factor is folded into the weights: the outputs differ from TensorFlow's by
    float32 rounding (2.4e-7 at most on values in [-1, 1], measured), not more.
    """
    in_height, in_width, depth = image.shape
    rows = image.reshape(in_height, in_width * depth)
    by_row = np.empty((height, in_width * depth), np.float32)
    for out, inputs, weights in _area_blocks(in_height, height, 1):
        np.matmul(weights, rows[inputs], out=by_row[out])
    resized = np.empty((height, width * depth), np.float32)
    for out, inputs, weights in _area_blocks(in_width, width, depth):
        np.matmul(by_row[:, inputs], weights, out=resized[:, out])
    return resized.reshape(height, width, depth)


# A picture size's pyramid is ~20 entries (~3 MB for 1 Mpx, ~15 MB for 3 Mpx): 128
# entries keep about six sizes' blocks, which cost ~8 ms to build for a new size.
@lru_cache(maxsize=128)
def _area_blocks(in_size: int, out_size: int, depth: int) -> tuple:
    """ResizeArea along one axis as dense blocks of its banded weight matrix, already divided
    by the scale: (output slice, input slice, float32 weights) per run of consecutive
    outputs, the run as long as about `_RESIZE_SPAN` input pixels. With depth 1 the weights
    are [outputs, inputs], to multiply rows from the left; with depth C they act on rows of
    C interleaved channels from the right: [inputs · C, outputs · C], kron(weights, I_C)ᵀ.
    """
    index, weight = _area_taps(in_size, out_size)
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    run = max(1, int(_RESIZE_SPAN / max(scale, 1.0)))
    starts = np.arange(0, out_size, run)
    block, row = np.divmod(np.arange(out_size), run)
    first = index[0, starts]
    index = np.where(weight != 0, index, index[0])  # padding taps: onto the first
    last = index.max(axis=0)
    ends = np.maximum.reduceat(last, starts) + 1
    dense = np.zeros((len(starts), run, int((ends - first).max())))
    np.add.at(dense, (block, row, index - first[block]), weight.astype(np.float64))
    dense = (dense / scale).astype(np.float32)
    if depth > 1:  # [block, inputs, C, outputs, C]: input (k, c) → output (o, c)
        eye = np.eye(depth, dtype=np.float32)
        dense = np.einsum("bok,cd->bkcod", dense, eye).reshape(len(starts), -1, run * depth)
    blocks = []
    for j, (o0, i0, i1) in enumerate(
        zip(starts.tolist(), first.tolist(), ends.tolist(), strict=True)
    ):
        o1 = min(o0 + run, out_size)
        if depth > 1:
            weights = dense[j, : (i1 - i0) * depth, : (o1 - o0) * depth]
        else:
            weights = dense[j, : o1 - o0, : i1 - i0]
        weights = np.ascontiguousarray(weights)
        weights.setflags(write=False)
        blocks.append((slice(o0 * depth, o1 * depth), slice(i0 * depth, i1 * depth), weights))
    return tuple(blocks)


@lru_cache(maxsize=256)
def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """ResizeArea's coverage along one axis: [taps, out_size] input indices and float32
    weights, tap k of output o being input floor(o·scale) + k. Outputs with fewer taps
    are padded with weight 0 (adding 0 leaves a float sum unchanged)."""
    scale = np.float32(in_size) / np.float32(out_size)
    outputs = np.arange(out_size, dtype=np.float32)
    low, high = outputs * scale, (outputs + 1) * scale
    first, end = np.floor(low).astype(np.int64), np.ceil(high).astype(np.int64)
    index = first + np.arange(int((end - first).max()))[:, None]
    i = index.astype(np.float32)
    # The kernel's four cases: the pixel starts before the output's span or not, and
    # ends after it or not.
    weight = np.where(
        i < low,
        np.where(i + 1 > high, scale, i + 1 - low),
        np.where(i + 1 > high, high - i, np.float32(1.0)),
    )
    weight = np.where(index < end, weight, np.float32(0.0)).astype(np.float32)
    # ceil(high) can pass the last pixel by rounding: TF bounds the index.
    index = np.clip(index, 0, in_size - 1)
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight

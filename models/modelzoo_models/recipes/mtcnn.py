"""MTCNN (P/R/O-net) as ONE frozen TensorFlow graph, from the weights of the PyPI `mtcnn` 1.0.0.

The whole detector runs inside the graph: image pyramid (a `While` loop over the
scales), PNet on every scale, per-scale and cross-scale NMS, square-ing, RNet and
ONet on batched `CropAndResize` crops, landmarks, the final NMS and the clipping to
the image. It reproduces the arithmetic of `mtcnn.MTCNN().detect_faces` (defaults:
`min_face_size=20`, `scale_factor=0.709`, thresholds 0.6/0.7/0.8, NMS 0.5/0.7 per
scale/across scales for PNet, 0.7 for RNet, 0.7 "min" for ONet, `fit_to_image=True`):

- normalisation `(rgb - 127.5) / 128`, pyramid scales `12/min_size * factor**k` for
  `k < round(log(min_dim/12)/log(1/factor) - 1)`, each level `floor(side*scale)` pixels,
  resized with `ResizeArea` (what `tf.image.resize(method=AREA)` runs);
- PNet windows `(2x+1, 2y+1, 2x+12, 2y+12)` moved by 11 × the regression, then divided by
  the scale; RNet/ONet regression scaled by `(x2-x1+1, y2-y1+1)`;
- the package's NMS, which is NOT greedy NMS: after sorting by score, a box goes when
  ANY higher-scored box (suppressed or not) overlaps it by more than the threshold
  (IoU = intersection/union, or intersection/smaller area for ONet), areas without +1;
- crops via `CropAndResize` of the normalised image with boxes divided by (H, W),
  zero (i.e. grey) outside the image;
- boxes clipped to [0, W-1] × [0, H-1]; landmarks are not clipped.

Where it differs on purpose: pyramid levels under 11 px (never with the default
`min_size` and `factor`; possible with a larger `min_size` or `factor`) are skipped,
where the package's PNet raises and `detect_faces` returns no face at all for the
image. Equal scores may be ordered differently (numpy's sort is not stable). To bound
the work of one request, `min_size` under 3 px counts as 3 (levels at most 4× the
image) and at most 64 levels run (the largest): only `factor` above ~0.93 with a
large image reaches that.

Interface (names are contracts):
  inputs   input       float32 [H, W, 3]  BGR, 0..255 (as OpenCV decodes)
           min_size    float32 []         smallest face in pixels (package: min_face_size)
           thresholds  float32 [3]        P, R, O-net score thresholds
           factor      float32 []         pyramid scale factor
  outputs  box         float32 [N, 4]     y1, x1, y2, x2 in input pixels
           prob        float32 [N]        ONet face score, descending
           landmarks   float32 [N, 10]    y1..y5 then x1..x5, in input pixels; the points
                                          are, in the package's names: left_eye, right_eye,
                                          nose, mouth_left, mouth_right ("left" = image left)
An image with a side under 12 px, or without a face, gives shapes [0,4], [0], [0,10].
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelzoo_models.contract import MTCNN_NETS, Artifact
from modelzoo_models.recipes import RecipeError

LANDMARK_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# The outputs' layout, shown in the catalog record and the V2 metadata.
NOTES = {
    "box": "y1, x1, y2, x2",
    "prob": "ONet face score, sorted descending",
    "landmarks": ", ".join(
        [f"y_{p}" for p in LANDMARK_POINTS] + [f"x_{p}" for p in LANDMARK_POINTS]
    ),
    "units": "input pixels; boxes clipped to the image, landmarks not",
}

# The package's fixed parameters (not inputs of the original frozen-graph interface).
_PNET_CELL, _PNET_STRIDE = 12, 2
# The smallest level PNet gives an output for; on smaller ones the package's Keras PNet
# fails, and with it the whole image (no face), so the graph skips them instead.
_PNET_MIN_SIDE = 11
_NMS_PNET_SCALE, _NMS_PNET_ALL, _NMS_RNET, _NMS_ONET = 0.5, 0.7, 0.7, 0.7
_NMS_CHUNK = 512
# Bounds on the work one request can ask for (the package has none): a `min_size` under
# 3 px (a level over 4× the image) counts as 3, and at most 64 levels (the largest) run.
_MIN_FACE, _MAX_LEVELS = 3.0, 64  # rows of the pairwise-overlap matrix computed at a time


def build(entry, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Write the frozen graph to `out`; return the extra catalog fields."""
    installed = importlib.metadata.version(entry.origin["package"])
    if installed != entry.origin["version"]:
        raise RecipeError(
            f"mtcnn: the catalog pins {entry.origin['package']}=={entry.origin['version']}, "
            f"{installed} is installed (the weights, and so the sha256, would differ)"
        )
    weights = {name: _load_weights(name) for name in ("pnet", "rnet", "onet")}
    log(
        "weights: "
        + ", ".join(f"{k} {sum(v.size for v in w.values())}" for k, w in weights.items())
    )
    graph_def = _canonical(_graph(weights))
    out.write_bytes(graph_def.SerializeToString(deterministic=True))
    log(f"graph: {len(graph_def.node)} nodes, {len(graph_def.library.function)} functions")
    return {"notes": NOTES}


# -- the networks alone, for LiteRT ----------------------------------------------------------

# The prepare step's synthetic pictures hold no face: at the package's thresholds every
# candidate dies in RNet or ONet and both runtimes agree on nothing. At these, 151 boxes
# come out of three of the four pictures, so boxes, scores and landmarks are compared too.
_LOOSE_THRESHOLDS = np.array([0.1, 0.001, 0.0001], np.float32)


def prepare(model, out: Path, tolerance: float) -> Artifact:
    """The `.tflite` for LiteRT: P-, R- and O-Net as three signatures (the whole graph's
    pyramid and crops have no builtin kernels), verified as modelzoo_server.litert_mtcnn
    serves them (the pyramid, NMS and crops in numpy) against the whole graph."""
    from modelzoo_models.prepare import verification_feeds, verified
    from modelzoo_server.litert import builtin_ops
    from modelzoo_server.litert_mtcnn import LiteMtcnn
    from modelzoo_server.runtime import read_graph_def
    from modelzoo_server.signature import FeedLimits

    graph_def = read_graph_def(model.path, model.sha256)
    data = _nets_tflite({name: _load_weights(name) for name in ("pnet", "rnet", "onet")})
    builtin_ops(data)
    feeds, described = verification_feeds(model)
    loose = [{**feed, "thresholds": _LOOSE_THRESHOLDS} for feed in feeds]
    described += ", at the default thresholds and at " + "/".join(
        f"{t:g}" for t in _LOOSE_THRESHOLDS
    )
    candidate = LiteMtcnn(data, model.signature, FeedLimits(), num_threads=1)
    return verified(
        model, graph_def, data, candidate, feeds + loose, described, out, tolerance, MTCNN_NETS
    )


def _nets_tflite(weights: dict[str, dict[str, np.ndarray]]) -> bytes:
    """P-, R- and O-Net, the graph's own layers (`_Net`), converted with builtin ops only;
    signature names and tensors as modelzoo_server.litert_mtcnn.NETS."""
    import tensorflow as tf

    class Nets(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nets = {k: _Net(tf, k, w) for k, w in weights.items()}

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        def pnet(self, image):
            regression, probability = self.nets["pnet"].pnet(image)
            return {"regression": regression, "probability": probability}

        @tf.function(input_signature=[tf.TensorSpec([None, 24, 24, 3], tf.float32)])
        def rnet(self, crops):
            regression, probability = self.nets["rnet"].rnet(crops)
            return {"regression": regression, "probability": probability}

        @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 3], tf.float32)])
        def onet(self, crops):
            regression, landmarks, probability = self.nets["onet"].onet(crops)
            return {"regression": regression, "landmarks": landmarks, "probability": probability}

    nets = Nets()
    functions = [nets.pnet, nets.rnet, nets.onet]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function() for f in functions], nets
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


# -- weights -------------------------------------------------------------------------------


def _load_weights(name: str) -> dict[str, np.ndarray]:
    """The package's weights, loaded the way its stages do, keyed `layer/variable`."""
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    path = importlib.resources.files("mtcnn.assets.weights") / f"{name}.lz4"
    model = {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()
    model.build()
    model.set_weights(load_weights(str(path)))
    return {"/".join(w.path.split("/")[-2:]): np.asarray(w.numpy()) for w in model.weights}


# -- graph ---------------------------------------------------------------------------------


def _graph(weights: dict[str, dict[str, np.ndarray]]):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="input")
        min_size = tf.compat.v1.placeholder(tf.float32, [], name="min_size")
        thresholds = tf.compat.v1.placeholder(tf.float32, [3], name="thresholds")
        factor = tf.compat.v1.placeholder(tf.float32, [], name="factor")
        nets = {k: _Net(tf, k, w) for k, w in weights.items()}
        box, prob, landmarks = _detect(tf, nets, image, min_size, thresholds, factor)
        tf.identity(box, name="box")
        tf.identity(prob, name="prob")
        tf.identity(landmarks, name="landmarks")
    return graph.as_graph_def()


class _Net:
    """The package's P/R/O-net layers as plain ops on constant weights."""

    def __init__(self, tf, name: str, weights: dict[str, np.ndarray]) -> None:
        self.tf = tf
        with tf.name_scope(f"{name}_weights"):
            self.w = {
                k: tf.constant(v, name=k.replace("/", "_").replace("-", "_"))
                for k, v in weights.items()
            }

    def conv(self, x, layer: str):
        tf = self.tf
        y = tf.nn.conv2d(x, self.w[f"{layer}/kernel"], strides=1, padding="VALID")
        return tf.nn.bias_add(y, self.w[f"{layer}/bias"])

    def dense(self, x, layer: str):
        return self.tf.matmul(x, self.w[f"{layer}/kernel"]) + self.w[f"{layer}/bias"]

    def prelu(self, x, layer: str):
        """Keras PReLU, `relu(x) + -alpha * relu(-x)`, as `relu(x) + alpha * min(x, 0)`.

        The two are equal bit for bit (one rounding, of alpha·x, either way). On feature
        maps the per-channel product runs as a 1×1 depthwise convolution, which is much
        faster on CPU than a broadcasting Mul.
        """
        tf = self.tf
        alpha = self.w[f"{layer}/alpha"]
        negative = tf.minimum(x, 0.0)
        if len(alpha.shape) == 3:  # (1, 1, C) after a convolution
            kernel = tf.reshape(alpha, [1, 1, -1, 1])
            scaled = tf.nn.depthwise_conv2d(negative, kernel, [1, 1, 1, 1], "VALID")
        else:
            scaled = negative * alpha
        return tf.nn.relu(x) + scaled

    def pool(self, x, size: int, padding: str):
        return self.tf.nn.max_pool2d(x, size, 2, padding)

    def flatten(self, x, size: int):
        # Keras Permute((2, 1, 3)) then Flatten.
        tf = self.tf
        return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), tf.stack([tf.shape(x)[0], size]))

    def pnet(self, x):
        x = self.pool(self.prelu(self.conv(x, "conv1"), "prelu1"), 2, "SAME")
        x = self.prelu(self.conv(x, "conv2"), "prelu2")
        x = self.prelu(self.conv(x, "conv3"), "prelu3")
        return self.conv(x, "conv4-1"), self.tf.nn.softmax(self.conv(x, "conv4-2"))

    def rnet(self, x):
        x = self.pool(self.prelu(self.conv(x, "conv1"), "prelu1"), 3, "SAME")
        x = self.pool(self.prelu(self.conv(x, "conv2"), "prelu2"), 3, "VALID")
        x = self.prelu(self.conv(x, "conv3"), "prelu3")
        x = self.prelu(self.dense(self.flatten(x, 3 * 3 * 64), "fc4"), "prelu4")
        return self.dense(x, "fc5-1"), self.tf.nn.softmax(self.dense(x, "fc5-2"))

    def onet(self, x):
        x = self.pool(self.prelu(self.conv(x, "conv1"), "prelu1"), 3, "SAME")
        x = self.pool(self.prelu(self.conv(x, "conv2"), "prelu2"), 3, "VALID")
        x = self.pool(self.prelu(self.conv(x, "conv3"), "prelu3"), 2, "SAME")
        x = self.prelu(self.conv(x, "conv4"), "prelu4")
        x = self.prelu(self.dense(self.flatten(x, 3 * 3 * 128), "fc5"), "prelu5")
        tf = self.tf
        return self.dense(x, "fc6-1"), self.dense(x, "fc6-2"), tf.nn.softmax(self.dense(x, "fc6-3"))


def _detect(tf, nets, image, min_size, thresholds, factor):
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    # standarize_batch + normalize_images, on RGB.
    normalized = ((tf.reverse(image, axis=[2]) - 127.5) / 128.0)[None]
    with tf.name_scope("pnet"):
        boxes = _pnet_stage(tf, nets["pnet"], normalized, min_size, factor, thresholds[0])
    with tf.name_scope("rnet"):
        boxes = _rnet_stage(tf, nets["rnet"], normalized, boxes, thresholds[1])
    with tf.name_scope("onet"):
        boxes, scores, landmarks = _onet_stage(tf, nets["onet"], normalized, boxes, thresholds[2])
    with tf.name_scope("fit"):
        # limit_bboxes (fit_to_image=True): x in [0, W-1], y in [0, H-1]; landmarks untouched.
        x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
        x1, x2 = (tf.clip_by_value(v, 0.0, width - 1.0) for v in (x1, x2))
        y1, y2 = (tf.clip_by_value(v, 0.0, height - 1.0) for v in (y1, y2))
        box = tf.cast(tf.stack([y1, x1, y2, x2], axis=1), tf.float32)
    return box, scores, landmarks


def _pyramid(tf, height, width, min_size, factor):
    """build_scale_pyramid, and the size of each level; levels under 11 px are dropped."""
    f64 = tf.float64
    min_dim = tf.minimum(height, width)
    factor = tf.cast(factor, f64)
    # round(-(log(min_dim / 12) / log(factor) + 1)) scales; round half to even, as numpy.
    count = tf.math.round(-(tf.math.log(min_dim / _PNET_CELL) / tf.math.log(factor) + 1.0))
    count = tf.clip_by_value(count, 0.0, float(_MAX_LEVELS))
    count = tf.cast(tf.where(tf.math.is_nan(count), tf.zeros_like(count), count), tf.int32)
    min_size = tf.maximum(tf.cast(min_size, f64), _MIN_FACE)
    scales = (_PNET_CELL / min_size) * tf.pow(factor, tf.cast(tf.range(count), f64))
    # tf.image.resize(images, shape * scale) truncates the float size.
    heights = tf.cast(tf.floor(height * scales), tf.int32)
    widths = tf.cast(tf.floor(width * scales), tf.int32)
    usable = tf.reshape(tf.where((heights >= _PNET_MIN_SIDE) & (widths >= _PNET_MIN_SIDE)), [-1])
    return tuple(tf.gather(t, usable) for t in (scales, heights, widths))


def _pnet_stage(tf, net, normalized, min_size, factor, threshold):
    """StagePNet: proposals from every pyramid level, NMS per level and across, squared."""
    f64 = tf.float64
    shape = tf.shape(normalized)
    scales, heights, widths = _pyramid(
        tf, tf.cast(shape[1], f64), tf.cast(shape[2], f64), min_size, factor
    )

    def level(i, boxes, scores):
        found, score = _pnet_level(tf, net, normalized, scales[i], heights[i], widths[i], threshold)
        return i + 1, tf.concat([boxes, found], 0), tf.concat([scores, score], 0)

    _, boxes, scores = tf.while_loop(
        lambda i, *_: i < tf.size(scales),
        level,
        [tf.constant(0), tf.zeros([0, 4], f64), tf.zeros([0], tf.float32)],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, 4]), tf.TensorShape([None])],
        parallel_iterations=16,
        name="pyramid",
    )
    boxes, _ = _sorted_nms(tf, boxes, scores, _NMS_PNET_ALL, "union")
    return _square(tf, boxes)


def _pnet_level(tf, net, normalized, scale, height, width, threshold):
    """One pyramid level: resize, PNet, windows over the threshold, NMS 0.5."""
    f64 = tf.float64
    image = tf.raw_ops.ResizeArea(
        images=normalized, size=tf.stack([height, width]), align_corners=False
    )
    regression, probability = net.pnet(image)
    # generate_bounding_box: windows (2x+1, 2y+1, 2x+12, 2y+12) moved by 11 × regression.
    face = probability[0, :, :, 1]
    where = tf.where(face > threshold)  # (y, x), row-major like np.where
    score = tf.gather_nd(face, where)
    reg = tf.cast(tf.gather_nd(regression[0], where), f64) * float(_PNET_CELL - 1)
    yx = tf.cast(where * _PNET_STRIDE, f64)
    y, x = yx[:, 0], yx[:, 1]
    x1, y1, x2, y2 = x + 1.0, y + 1.0, x + float(_PNET_CELL), y + float(_PNET_CELL)
    found = tf.stack([x1 + reg[:, 0], y1 + reg[:, 1], x2 + reg[:, 2], y2 + reg[:, 3]], axis=1)
    order = _argsort_desc(tf, score)
    found, score = tf.gather(found, order), tf.gather(score, order)
    found = found / scale  # upscale_bboxes
    keep = _nms_keep(tf, found, _NMS_PNET_SCALE, "union")
    return tf.boolean_mask(found, keep), tf.boolean_mask(score, keep)


def _rnet_stage(tf, net, normalized, boxes, threshold):
    """StageRNet: refine the squared PNet boxes on 24×24 crops, NMS, square again."""
    offsets, probability = _drop_spare(net.rnet(_crops(tf, normalized, boxes, 24)))
    scores = probability[:, 1]
    boxes = _adjust(tf, boxes, offsets)
    keep = scores > threshold
    boxes, scores = tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)
    boxes, _ = _sorted_nms(tf, boxes, scores, _NMS_RNET, "union")
    return _square(tf, boxes)


def _onet_stage(tf, net, normalized, boxes, threshold):
    """StageONet: 48×48 crops, landmarks, final boxes, NMS by the smaller area."""
    offsets, points, probability = _drop_spare(net.onet(_crops(tf, normalized, boxes, 48)))
    scores = probability[:, 1]
    # adjust_landmarks: float64 on the ONet input boxes, stored as float32.
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    w, h = (x2 - x1 + 1.0)[:, None], (y2 - y1 + 1.0)[:, None]
    points = tf.cast(points, tf.float64)
    xs = w * points[:, 0:5] + x1[:, None] - 1.0
    ys = h * points[:, 5:10] + y1[:, None] - 1.0
    landmarks = tf.cast(tf.concat([ys, xs], axis=1), tf.float32)
    boxes = _adjust(tf, boxes, offsets)
    keep = scores > threshold
    boxes, scores, landmarks = (tf.boolean_mask(t, keep) for t in (boxes, scores, landmarks))
    order = _argsort_desc(tf, scores)
    boxes, scores, landmarks = (tf.gather(t, order) for t in (boxes, scores, landmarks))
    keep = _nms_keep(tf, boxes, _NMS_ONET, "min")
    return tuple(tf.boolean_mask(t, keep) for t in (boxes, scores, landmarks))


def _argsort_desc(tf, scores):
    """numpy's `argsort(scores)[::-1]` with a stable sort: ties keep the higher index first."""
    n = tf.size(scores)
    order = tf.math.top_k(tf.reverse(scores, [0]), k=n, sorted=True).indices
    return n - 1 - order


def _sorted_nms(tf, boxes, scores, threshold: float, method: str):
    order = _argsort_desc(tf, scores)
    boxes, scores = tf.gather(boxes, order), tf.gather(scores, order)
    keep = _nms_keep(tf, boxes, threshold, method)
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)


def _nms_keep(tf, boxes, threshold: float, method: str):
    """mtcnn.utils.bboxes.nms: keep box j unless some box i < j overlaps it above threshold.

    Computed over row blocks of the overlap matrix so memory stays O(chunk × N).
    """
    n = tf.shape(boxes)[0]
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    area = (x2 - x1) * (y2 - y1)
    columns = tf.range(n)

    def block(start, suppressed):
        end = tf.minimum(start + _NMS_CHUNK, n)
        rows = tf.range(start, end)
        bx1, by1, bx2, by2, barea = (t[start:end, None] for t in (x1, y1, x2, y2, area))
        inter_x = tf.maximum(tf.minimum(bx2, x2) - tf.maximum(bx1, x1), 0.0)
        inter_y = tf.maximum(tf.minimum(by2, y2) - tf.maximum(by1, y1), 0.0)
        inter = inter_x * inter_y
        if method == "union":
            overlap = inter / (barea + area - inter)
        else:
            overlap = inter / tf.minimum(barea, area)
        hit = (overlap > threshold) & (rows[:, None] < columns[None, :])
        return end, suppressed | tf.reduce_any(hit, axis=0)

    _, suppressed = tf.while_loop(
        lambda start, _: start < n, block, [tf.constant(0), tf.zeros([n], tf.bool)], name="nms"
    )
    return tf.logical_not(suppressed)


def _square(tf, boxes):
    """resize_to_square: grow the short side around the centre."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    h, w = y2 - y1, x2 - x1
    side = tf.maximum(w, h)
    x1 = x1 + w * 0.5 - side * 0.5
    y1 = y1 + h * 0.5 - side * 0.5
    return tf.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _adjust(tf, boxes, offsets):
    """adjust_bboxes as the package runs it: box + offset × (side + 1), in float32."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    w = tf.cast(x2 - x1 + 1.0, tf.float32)
    h = tf.cast(y2 - y1 + 1.0, tf.float32)
    sizes = tf.stack([w, h, w, h], axis=1)
    return tf.cast(tf.cast(boxes, tf.float32) + offsets * sizes, tf.float64)


def _crops(tf, normalized, boxes, size: int):
    """extract_patches, plus one spare patch at the end (see `_drop_spare`).

    TensorFlow's CPU convolutions mishandle an empty batch, so the batch never is one;
    CropAndResize refuses an empty image, so a 0-pixel input gets grey patches instead.
    """
    shape = tf.shape(normalized)
    height, width = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    relative = tf.cast(tf.stack([y1 / height, x1 / width, y2 / height, x2 / width], 1), tf.float32)
    relative = tf.concat([relative, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
    count = tf.shape(relative)[0]
    return tf.cond(
        tf.minimum(shape[1], shape[2]) > 0,
        lambda: tf.image.crop_and_resize(
            normalized, relative, tf.zeros([count], tf.int32), [size, size]
        ),
        lambda: tf.zeros(tf.stack([count, size, size, 3])),
        name="crops",
    )


def _drop_spare(outputs):
    return tuple(t[:-1] for t in outputs)


# -- determinism ---------------------------------------------------------------------------

_UID_SUFFIX = re.compile(r"_\d+$")


def _canonical(graph_def):
    """Rename library functions by first use, so the bytes never depend on TF's global uids.

    TensorFlow names loop bodies `<scope>_while_body_<uid>` (a process-wide counter) and
    repeats that name inside the function (argument names, inputs), so the names are
    rewritten everywhere: in the graph's function attributes and in each function's text.
    """
    from google.protobuf import text_format

    functions = {f.signature.name: f for f in graph_def.library.function}
    renamed: dict[str, str] = {}

    def visit(attrs) -> None:
        for key in sorted(attrs):
            value = attrs[key]
            names = [value.func] if value.HasField("func") else list(value.list.func)
            for func in names:
                if func.name in functions and func.name not in renamed:
                    renamed[func.name] = f"{_UID_SUFFIX.sub('', func.name)}_f{len(renamed)}"
                    for node in functions[func.name].node_def:
                        visit(node.attr)

    for node in graph_def.node:
        visit(node.attr)
    missing = set(functions) - set(renamed)
    if missing:
        raise RecipeError(f"unreferenced library functions: {sorted(missing)}")
    pattern = re.compile(
        r"(?<![A-Za-z0-9_])("
        + "|".join(map(re.escape, sorted(renamed, key=len, reverse=True)))
        + r")(?!\d)"
    )

    def rename(text: str) -> str:
        return pattern.sub(lambda m: renamed[m.group(1)], text)

    for node in graph_def.node:
        for value in node.attr.values():
            if value.HasField("func"):
                value.func.name = rename(value.func.name)
            for func in value.list.func:
                func.name = rename(func.name)
    rewritten = []
    for function in functions.values():
        copy = type(function)()
        text_format.Parse(rename(text_format.MessageToString(function)), copy)
        rewritten.append(copy)
    rewritten.sort(key=lambda f: f.signature.name)
    del graph_def.library.function[:]
    graph_def.library.function.extend(rewritten)
    leftover = [name for name in renamed if name in str(graph_def.library)]
    if leftover:
        raise RecipeError(f"function names left after renaming: {leftover}")
    return graph_def

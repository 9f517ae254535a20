"""Small SavedModels built in the tests: well-behaved ones, hostile ones, and archives."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def keras_dense(path: Path) -> Path:
    """A Keras MLP over [N, 4] float32 with fixed (seeded) weights, exported for serving."""
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    model.export(str(path), verbose=False)
    return path


def keras_image_classifier(path: Path) -> Path:
    """A Keras convolutional classifier of 32x32 RGB images into 5 classes, fixed weights."""
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(5)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    model.export(str(path), verbose=False)
    return path


class _TwoInputs(tf.Module):
    """sum = a @ w + b and prod = a * b (distinct roles, so swapped inputs would show);
    `scaled` is a second signature, 3 * a @ w, with an int32 input besides."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.arange(1, 7, dtype=np.float32).reshape(2, 3) / 7)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="a"),
            tf.TensorSpec([None, 3], tf.float32, name="b"),
        ]
    )
    def both(self, a, b):
        return {"sum": tf.matmul(a, self.w) + b, "prod": a[:, :1] * b}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="a"),
            tf.TensorSpec([], tf.int32, name="times"),
        ]
    )
    def scaled(self, a, times):
        return {"out": tf.matmul(a, self.w) * tf.cast(times, tf.float32)}


def two_inputs(path: Path) -> Path:
    module = _TwoInputs()
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.both, "scaled": module.scaled}
    )
    return path


def _single(path: Path, body) -> Path:
    """A SavedModel whose one signature maps x ([N] float32) through `body`."""
    module = tf.Module()
    module.f = tf.function(body, input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(path), signatures=module.f)
    return path


def writes_file(path: Path, victim: Path) -> Path:
    """Its signature writes `victim` (tf.io.write_file inside the tf.function)."""

    def body(x):
        tf.io.write_file(str(victim), "pwned")
        return x + 1.0

    return _single(path, body)


class _WritesOnLoad(tf.saved_model.experimental.TrackableResource):
    """A resource whose initialiser, which loading runs, writes `victim`."""

    def __init__(self, victim: Path) -> None:
        self._victim = str(victim)
        super().__init__()

    def _create_resource(self):  # an op the check lets through, so WriteFile is the culprit
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[])

    def _initialize(self):
        tf.io.write_file(self._victim, "pwned")
        return tf.no_op()


def writes_on_load(path: Path, victim: Path) -> Path:
    """`tf.saved_model.load` alone would write `victim`; its signature is harmless."""
    module = tf.Module()
    module.resource = _WritesOnLoad(victim)
    module.f = tf.function(lambda x: x + 1.0, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(path), signatures=module.f)
    return path


def reads_file(path: Path, victim: Path) -> Path:
    def body(x):
        return x + tf.strings.to_number(tf.io.read_file(str(victim)))

    return _single(path, body)


def calls_python(path: Path) -> Path:
    def body(x):
        return tf.py_function(lambda v: v * 2.0, [x], tf.float32)

    return _single(path, body)


class _Vocabulary(tf.Module):
    def __init__(self, vocabulary: Path) -> None:
        super().__init__()
        initializer = tf.lookup.TextFileInitializer(
            str(vocabulary), tf.string, 0, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def f(self, x):
        return x + tf.cast(self.table.lookup(tf.constant("b")), tf.float32)


def with_vocabulary(path: Path, vocabulary: Path) -> Path:
    """A lookup table initialised from a text file: the file ships as an asset."""
    vocabulary.write_text("a\nb\nc\n")
    module = _Vocabulary(vocabulary)
    tf.saved_model.save(module, str(path), signatures=module.f)
    return path


def tar_gz(folder: Path, archive: Path, top: str = "model") -> Path:
    """`folder` as `archive`, under one top-level folder `top`."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=top)
    return archive


def tar_gz_with(archive: Path, folder: Path, extra: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A SavedModel archive plus one hand-made member (a link, a `..` path)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="model")
        tar.addfile(extra, io.BytesIO(data) if data else None)
    return archive

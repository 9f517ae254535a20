"""The TF.js graph-model converter on small models written here, checked against numpy.

Each model is written the way the TF.js converter writes them: a GraphDef in
protobuf-JSON with fused ops (`_FusedConv2D`, `FusedDepthwiseConv2dNative`,
`_FusedMatMul`), type attrs stripped from plain ops, Const nodes without values and
the weights in a shard, quantized per the manifest. The expected values are numpy's
float64 computation on the weights as TF.js dequantizes them (q * scale + min).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from modelzoo_models.graph_policy import check_graph
from modelzoo_models.recipes import tfjs_graph
from modelzoo_server.runtime import load_graph

pytestmark = pytest.mark.models

RNG = np.random.default_rng(7)
# float32 graph vs float64 numpy over a few hundred multiply-adds of O(1) values.
ATOL = 1e-4


# --- writing TF.js graph models ------------------------------------------------------------


def _s(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ints(values) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _shape(shape) -> dict:
    return {"dim": [{"size": str(d)} for d in shape]}


class ModelWriter:
    """Builds model.json + one shard; `weight()` quantizes like tfjs-converter does."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.specs: list[dict] = []
        self.chunks: list[bytes] = []

    def placeholder(self, name: str, shape) -> str:
        self.nodes.append(
            {
                "name": name,
                "op": "Placeholder",
                "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": _shape(shape)}},
            }
        )
        return name

    def weight(self, name: str, values: np.ndarray, quant: str | None = None) -> np.ndarray:
        """Store a float32 weight; return the values TF.js will see after dequantizing."""
        values = np.asarray(values, dtype=np.float32)
        spec: dict = {"name": name, "shape": list(values.shape), "dtype": "float32"}
        if quant in ("uint8", "uint16"):
            levels = 255 if quant == "uint8" else 65535
            low, high = float(values.min()), float(values.max())
            scale = (high - low) / levels
            q = np.round((values - low) / scale).astype(quant)
            spec["quantization"] = {"dtype": quant, "scale": scale, "min": low}
            self.chunks.append(q.astype(q.dtype.newbyteorder("<")).tobytes())
            seen = (q.astype(np.float64) * scale + low).astype(np.float32)
        elif quant == "float16":
            half = values.astype("<f2")
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            self.chunks.append(half.tobytes())
            seen = half.astype(np.float32)
        else:
            self.chunks.append(values.astype("<f4").tobytes())
            seen = values
        self.specs.append(spec)
        self.nodes.append(
            {
                "name": name,
                "op": "Const",
                "attr": {
                    "dtype": {"type": "DT_FLOAT"},
                    "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": _shape(values.shape)}},
                },
            }
        )
        return seen

    def op(self, name: str, op: str, inputs: list[str], **attr) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def fused(self, name: str, op: str, inputs: list[str], fused_ops: list[str], **attr) -> str:
        attr = {
            "T": {"type": "DT_FLOAT"},
            "fused_ops": {"list": {"s": [_s(f) for f in fused_ops]}},
            "num_args": {"i": str(len(inputs) - 2)},
            **attr,
        }
        return self.op(name, op, inputs, **attr)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "group1-shard1of1.bin").write_bytes(b"".join(self.chunks))
        model = {
            "format": "graph-model",
            "generatedBy": "tests",
            "convertedBy": "hand",
            "modelTopology": {"node": self.nodes, "library": {}, "versions": {}},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": self.specs}],
        }
        path = folder / "model.json"
        path.write_text(json.dumps(model))
        return path


def _conv_attrs(strides=(1, 1, 1, 1), padding="SAME") -> dict:
    return {
        "strides": _ints(strides),
        "padding": {"s": _s(padding)},
        "data_format": {"s": _s("NHWC")},
        "dilations": _ints((1, 1, 1, 1)),
        "explicit_paddings": {"list": {}},
        "epsilon": {"f": 0},
    }


def _run(pb: Path, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    signature = {
        "inputs": [
            {"name": n, "dtype": "float32", "shape": [-1, *v.shape[1:]]} for n, v in inputs.items()
        ],
        "outputs": [{"name": n, "dtype": "float32", "shape": []} for n in outputs],
    }
    # output shapes are not checked by the runtime; -1 everywhere would do as well
    return load_graph(pb, signature).run(inputs)


def _convert(model_json: Path) -> Path:
    pb = model_json.with_suffix(".pb")
    graph_def = tfjs_graph.convert_to_file(model_json, pb)
    check_graph(graph_def)  # the server's allowlist: no `_` op left
    assert not {n.op for n in graph_def.node} & {"FusedDepthwiseConv2dNative", "Prelu"}
    return pb


# --- numpy references ----------------------------------------------------------------------


def _windows(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    if padding == "SAME":
        out = -(-x.shape[1] // stride)
        total = max((out - 1) * stride + k - x.shape[1], 0)
        x = np.pad(
            x, ((0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2), (0, 0))
        )
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # N h w C kh kw


def conv2d(x, w, stride=1, padding="SAME"):
    return np.einsum(
        "nhwcij,ijco->nhwo", _windows(x.astype(np.float64), w.shape[0], stride, padding), w
    )


def depthwise(x, w, stride=1, padding="SAME"):
    out = np.einsum(
        "nhwcij,ijcm->nhwcm", _windows(x.astype(np.float64), w.shape[0], stride, padding), w
    )
    return out.reshape(*out.shape[:3], -1)


def relu(v):
    return np.maximum(v, 0)


# --- the cases -----------------------------------------------------------------------------


def test_fused_conv2d_bias_relu_uint8(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 9, 9, 3))
    w = m.weight("w", RNG.normal(size=(3, 3, 3, 4)), "uint8")
    b = m.weight("b", RNG.normal(size=4), "uint8")
    m.fused("y", "_FusedConv2D", ["x", "w", "b"], ["BiasAdd", "Relu"], **_conv_attrs())
    x = RNG.normal(size=(2, 9, 9, 3)).astype(np.float32)
    got = _run(_convert(m.write(tmp_path)), {"x": x}, ["y"])["y"]
    np.testing.assert_allclose(got, relu(conv2d(x, w) + b), atol=ATOL)


def test_fused_conv2d_bias_relu6_uint16_strided(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 10, 10, 2))
    w = m.weight("w", RNG.normal(size=(3, 3, 2, 5)) * 2, "uint16")
    b = m.weight("b", RNG.normal(size=5) * 3, "uint16")
    attrs = _conv_attrs(strides=(1, 2, 2, 1), padding="VALID")
    m.fused("y", "_FusedConv2D", ["x", "w", "b"], ["BiasAdd", "Relu6"], **attrs)
    x = RNG.normal(size=(1, 10, 10, 2)).astype(np.float32)
    got = _run(_convert(m.write(tmp_path)), {"x": x}, ["y"])["y"]
    want = np.clip(conv2d(x, w, 2, "VALID") + b, 0, 6)
    assert (want == 6).any() and (want == 0).any()  # both clamps are exercised
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_fused_depthwise_float16_then_plain_ops_without_type_attrs(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 8, 8, 3))
    w = m.weight("w", RNG.normal(size=(3, 3, 3, 2)), "float16")
    b = m.weight("b", RNG.normal(size=6), "float16")
    m.fused(
        "dw", "FusedDepthwiseConv2dNative", ["x", "w", "b"], ["BiasAdd", "Relu"], **_conv_attrs()
    )
    # TF.js strips `T` from plain ops and leaves grappler's private attrs: both handled.
    m.op("y", "Sigmoid", ["dw"], _grappler_ArithmeticOptimizer_MinimizeBroadcasts={"b": True})
    x = RNG.normal(size=(3, 8, 8, 3)).astype(np.float32)
    got = _run(_convert(m.write(tmp_path)), {"x": x}, ["y"])["y"]
    want = 1 / (1 + np.exp(-relu(depthwise(x, w) + b)))
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_fused_matmul_float32_with_prelu_and_leaky_relu(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 6))
    w = m.weight("w", RNG.normal(size=(6, 5)))
    b = m.weight("b", RNG.normal(size=5))
    alpha = m.weight("alpha", RNG.uniform(0.1, 0.5, size=5))
    w2 = m.weight("w2", RNG.normal(size=(4, 5)))  # used transposed
    b2 = m.weight("b2", RNG.normal(size=4))
    mm = {"transpose_a": {"b": False}, "transpose_b": {"b": False}}
    m.fused("h", "_FusedMatMul", ["x", "w", "b", "alpha"], ["BiasAdd", "Prelu"], **mm)
    mm2 = {"transpose_a": {"b": False}, "transpose_b": {"b": True}, "leakyrelu_alpha": {"f": 0.1}}
    m.fused("y", "_FusedMatMul", ["h", "w2", "b2"], ["BiasAdd", "LeakyRelu"], **mm2)
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    got = _run(_convert(m.write(tmp_path)), {"x": x}, ["h", "y"])
    h = x.astype(np.float64) @ w + b
    h = np.where(h > 0, h, alpha * h)
    y = h @ w2.T + b2
    y = np.where(y > 0, y, np.float32(0.1) * y)
    assert (h < 0).any()
    np.testing.assert_allclose(got["h"], h, atol=ATOL)
    np.testing.assert_allclose(got["y"], y, atol=ATOL)


def test_fused_conv2d_batch_norm_relu(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 6, 6, 2))
    w = m.weight("w", RNG.normal(size=(3, 3, 2, 3)), "uint8")
    scale = m.weight("scale", RNG.uniform(0.5, 2, size=3))
    offset = m.weight("offset", RNG.normal(size=3))
    mean = m.weight("mean", RNG.normal(size=3))
    variance = m.weight("variance", RNG.uniform(0.5, 2, size=3))
    attrs = {**_conv_attrs(), "epsilon": {"f": 0.001}}
    inputs = ["x", "w", "scale", "offset", "mean", "variance"]
    m.fused("y", "_FusedConv2D", inputs, ["FusedBatchNorm", "Relu"], **attrs)
    x = RNG.normal(size=(2, 6, 6, 2)).astype(np.float32)
    got = _run(_convert(m.write(tmp_path)), {"x": x}, ["y"])["y"]
    normed = (conv2d(x, w) - mean) / np.sqrt(variance + np.float32(0.001)) * scale + offset
    np.testing.assert_allclose(got, relu(normed), atol=ATOL)


def test_output_is_deterministic(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 5, 5, 2))
    m.weight("w", RNG.normal(size=(1, 1, 2, 2)), "uint8")
    m.weight("b", RNG.normal(size=2))
    m.fused("y", "_FusedConv2D", ["x", "w", "b"], ["BiasAdd", "Elu"], **_conv_attrs())
    model_json = m.write(tmp_path)
    first = tfjs_graph.convert(model_json).SerializeToString(deterministic=True)
    assert tfjs_graph.convert(model_json).SerializeToString(deterministic=True) == first


def test_unsupported_op_is_named(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 4))
    m.op("y", "MysteryTfjsOp", ["x"])
    with pytest.raises(tfjs_graph.RecipeError, match=r"unsupported op 'MysteryTfjsOp'.*'y'"):
        tfjs_graph.convert(m.write(tmp_path))


def test_unsupported_fused_activation_is_named(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (-1, 4, 4, 1))
    m.weight("w", RNG.normal(size=(1, 1, 1, 1)))
    m.weight("b", RNG.normal(size=1))
    m.fused("y", "_FusedConv2D", ["x", "w", "b"], ["BiasAdd", "Swish"], **_conv_attrs())
    with pytest.raises(tfjs_graph.RecipeError, match=r"unsupported fused op 'Swish'"):
        tfjs_graph.convert(m.write(tmp_path))


def test_op_outside_the_allowlist_is_refused(tmp_path):
    m = ModelWriter()
    m.nodes.append({"name": "path", "op": "Placeholder", "attr": {"dtype": {"type": "DT_STRING"}}})
    m.op("y", "ReadFile", ["path"])
    with pytest.raises(tfjs_graph.RecipeError, match=r"'ReadFile' \(file I/O\)"):
        tfjs_graph.convert(m.write(tmp_path))


def test_free_batch_frees_a_fixed_leading_dimension(tmp_path):
    m = ModelWriter()
    m.placeholder("x", (1, 3))
    w = m.weight("w", RNG.normal(size=(3, 2)), "uint8")
    m.op("y", "MatMul", ["x", "w"])  # no T, no transpose attrs: TF.js leaves defaults out
    model_json = m.write(tmp_path)
    pb = tmp_path / "free.pb"
    graph_def = tfjs_graph.convert_to_file(model_json, pb, free_batch=True)
    placeholder = next(n for n in graph_def.node if n.op == "Placeholder")
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [-1, 3]
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(pb, {"x": x}, ["y"])["y"], x.astype(np.float64) @ w, atol=ATOL)

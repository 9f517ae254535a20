"""V2 request parsing and the binary data extension (pure), with property-based round trips."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelzoo_server.errors import InvalidInput
from modelzoo_server.signature import V2_DTYPES
from modelzoo_server.v2_codec import (
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    parse_infer_request,
)

pytestmark = pytest.mark.unit

DTYPES = st.sampled_from(sorted(V2_DTYPES))
ARRAYS = DTYPES.flatmap(
    lambda name: hnp.arrays(
        V2_DTYPES[name], hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)
    ).map(lambda a: (name, a))
)


def _binary_request(named: list[tuple[str, np.ndarray]]) -> tuple[bytes, int]:
    inputs, blobs = [], []
    for index, (datatype, array) in enumerate(named):
        blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
        inputs.append(
            {
                "name": f"t{index}",
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    head = json.dumps({"inputs": inputs}).encode()
    return head + b"".join(blobs), len(head)


@settings(max_examples=150, deadline=None)
@given(st.lists(ARRAYS, min_size=1, max_size=4))
def test_binary_inputs_round_trip(named) -> None:
    body, length = _binary_request(named)
    request = parse_infer_request(body, length)
    for index, (_, array) in enumerate(named):
        np.testing.assert_array_equal(request.inputs[f"t{index}"], array)
        assert request.inputs[f"t{index}"].dtype == array.dtype


@settings(max_examples=150, deadline=None)
@given(ARRAYS.filter(lambda pair: pair[1].dtype.kind != "f" or np.isfinite(pair[1]).all()))
def test_json_inputs_round_trip(pair) -> None:
    datatype, array = pair
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "data": array.reshape(-1).tolist(),
                }
            ]
        }
    ).encode()
    np.testing.assert_array_equal(parse_infer_request(body, None).inputs["t"], array)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), ARRAYS.map(lambda p: p[1]), min_size=1),
    st.booleans(),
)
def test_response_binary_framing_round_trips(outputs, binary) -> None:
    request = InferRequest(id="x", inputs={}, outputs=None, binary_default=binary)
    body, headers = encode_infer_response("m", request, outputs)
    length = int(headers.get("Inference-Header-Content-Length", len(body)))
    header = json.loads(body[:length])
    offset = length
    for out in header["outputs"]:
        dtype = V2_DTYPES[out["datatype"]]
        if binary:
            size = out["parameters"]["binary_data_size"]
            value = np.frombuffer(body[offset : offset + size], dtype=dtype.newbyteorder("<"))
            offset += size
        else:
            value = np.asarray(out["data"], dtype=dtype)
        np.testing.assert_array_equal(value.reshape(out["shape"]), outputs[out["name"]])
    assert offset == len(body) if binary else True


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(-5, 250)))
def test_arbitrary_bytes_never_crash(body, length) -> None:
    with contextlib.suppress(InvalidInput):
        parse_infer_request(body, length)


@pytest.mark.parametrize(
    "body, length, words",
    [
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], '
            b'"parameters": {"binary_data_size": 8}}]}',
            None,
            "runs past the end",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], '
            b'"parameters": {"binary_data_size": 8}}]}' + b"\0" * 8,
            100,
            "does not match shape",
        ),
        (b'{"inputs": []}', None, "non-empty list"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [100000, 100000, 1000]}]}',
            None,
            "more than",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
            None,
            "not supported",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}',
            None,
            "not numbers",
        ),
        (b"{}", 10, "body has 2 bytes"),
    ],
)
def test_bad_requests_say_why(body: bytes, length: int | None, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        parse_infer_request(body, length)


def test_lying_binary_size_with_extra_bytes_is_refused() -> None:
    head = (
        b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2], '
        b'"parameters": {"binary_data_size": 2}}]}'
    )
    with pytest.raises(InvalidInput, match="no input claims"):
        parse_infer_request(head + b"\1\2\3", len(head))


def test_requested_outputs_select_and_mix_encodings() -> None:
    request = InferRequest(
        id=None,
        inputs={},
        binary_default=False,
        outputs=(RequestedOutput("b", binary=True), RequestedOutput("a", binary=False)),
    )
    body, headers = encode_infer_response(
        "m",
        request,
        {"a": np.array([1, 2], np.int32), "b": np.array([0.5], np.float32), "c": np.zeros(3)},
    )
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    assert [o["name"] for o in header["outputs"]] == ["b", "a"]
    assert header["outputs"][1]["data"] == [1, 2]
    assert np.frombuffer(body[length:], "<f4").tolist() == [0.5]
    with pytest.raises(InvalidInput, match="unknown output"):
        encode_infer_response(
            "m", InferRequest(None, {}, (RequestedOutput("z", True),), False), {"a": np.zeros(1)}
        )

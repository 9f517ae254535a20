"""The gRPC V2 codec (pure): raw and typed inputs round-trip, bad tensors are refused with a
reason, and the committed generated module is what the .proto generates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelzoo_server.errors import InvalidInput
from modelzoo_server.protos import generate
from modelzoo_server.protos import grpc_predict_v2_pb2 as pb
from modelzoo_server.signature import V2_DTYPES
from modelzoo_server.v2_grpc_codec import (
    CONTENTS_FIELDS,
    encode_model_infer,
    parse_model_infer,
    requested_outputs,
)

pytestmark = pytest.mark.unit

ARRAYS = st.sampled_from(sorted(V2_DTYPES)).flatmap(
    lambda name: hnp.arrays(
        V2_DTYPES[name], hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)
    ).map(lambda a: (name, a))
)
FINITE = ARRAYS.filter(lambda pair: pair[1].dtype.kind != "f" or np.isfinite(pair[1]).all())


def _raw_request(named: list[tuple[str, np.ndarray]]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for index, (datatype, array) in enumerate(named):
        request.inputs.add(name=f"t{index}", datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return request


def test_generated_module_matches_the_proto() -> None:
    committed = generate.MODULE.read_text()
    assert committed == generate.generate(), (
        "grpc_predict_v2_pb2.py is stale: run python -m modelzoo_server.protos.generate"
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(ARRAYS, min_size=1, max_size=4))
def test_raw_inputs_round_trip(named) -> None:
    inputs = parse_model_infer(_raw_request(named))
    for index, (_, array) in enumerate(named):
        np.testing.assert_array_equal(inputs[f"t{index}"], array)
        assert inputs[f"t{index}"].dtype == array.dtype


@settings(max_examples=150, deadline=None)
@given(FINITE.filter(lambda pair: pair[0] in CONTENTS_FIELDS))
def test_typed_contents_round_trip(pair) -> None:
    datatype, array = pair
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="t", datatype=datatype, shape=array.shape)
    getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.reshape(-1).tolist())
    np.testing.assert_array_equal(parse_model_infer(request)["t"], array)


@settings(max_examples=100, deadline=None)
@given(st.lists(ARRAYS, min_size=1, max_size=3))
def test_outputs_round_trip_as_raw_contents(named) -> None:
    outputs = {f"o{index}": array for index, (_, array) in enumerate(named)}
    response = encode_model_infer("m", "id-1", outputs)
    assert response.id == "id-1" and response.model_version == "1"
    for index, tensor in enumerate(response.outputs):
        datatype, array = named[index]
        assert tensor.datatype == datatype and list(tensor.shape) == list(array.shape)
        decoded = np.frombuffer(response.raw_output_contents[index], array.dtype.newbyteorder("<"))
        np.testing.assert_array_equal(decoded.reshape(array.shape), array)


def _one_input(**fields) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(**fields)
    return request


@pytest.mark.parametrize(
    ("request_message", "reason"),
    [
        (pb.ModelInferRequest(model_name="m"), "has no inputs"),
        (_one_input(name="t", datatype="STRING", shape=[1]), "datatype 'STRING' is not supported"),
        (_one_input(name="t", datatype="FP32", shape=[-1]), "negative dimension"),
        (_one_input(name="t", datatype="FP32", shape=[1 << 20, 1 << 20]), "more than"),
        (_one_input(name="t", datatype="FP16", shape=[1]), "FP16 travels in raw_input_contents"),
        (
            _one_input(name="t", datatype="FP32", shape=[2], contents={"fp32_contents": [1.0]}),
            "1 values do not fill shape [2]",
        ),
        (
            _one_input(name="t", datatype="UINT8", shape=[1], contents={"uint_contents": [300]}),
            "values do not fit UINT8",
        ),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(request_message, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_model_infer(request_message)


def test_raw_contents_must_match_inputs() -> None:
    request = _raw_request([("FP32", np.zeros((2, 2), np.float32))])
    request.raw_input_contents[0] = b"\0" * 12
    with pytest.raises(InvalidInput, match=r"raw_input_contents\[0\] of 12 bytes does not match"):
        parse_model_infer(request)
    request.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match="2 entries for 1 inputs"):
        parse_model_infer(request)
    both = _raw_request([("FP32", np.zeros(1, np.float32))])
    both.inputs[0].contents.fp32_contents.append(0.0)
    with pytest.raises(InvalidInput, match="not both"):
        parse_model_infer(both)
    twice = _raw_request([("FP32", np.zeros(1, np.float32))] * 2)
    twice.inputs[1].name = "t0"
    with pytest.raises(InvalidInput, match="given twice"):
        parse_model_infer(twice)


def test_requested_outputs_keep_their_order() -> None:
    request = pb.ModelInferRequest(outputs=[{"name": "b"}, {"name": "a"}])
    assert requested_outputs(request) == ("b", "a")
    assert requested_outputs(pb.ModelInferRequest()) is None

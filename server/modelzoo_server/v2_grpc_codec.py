"""Open Inference Protocol gRPC messages ⇄ numpy (pure), with the tensor checks of v2_codec.

Inputs come either all in `raw_input_contents` (what tritonclient.grpc sends) or each in
its typed `contents`; outputs always go back in `raw_output_contents`, as Triton does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelzoo_server.errors import InvalidInput
from modelzoo_server.protos import grpc_predict_v2_pb2 as pb
from modelzoo_server.signature import NUMPY_TO_V2, Signature, TensorSpec
from modelzoo_server.v2_codec import (
    MODEL_VERSION,
    PLATFORM,
    little_endian_bytes,
    tensor_header,
)

# The typed `contents` field of each datatype; FP16 has none (raw only, as the spec says).
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def parse_model_infer(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """The request's input tensors by name; InvalidInput says what is wrong."""
    if not request.inputs:
        raise InvalidInput("the request has no inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, in the order of 'inputs'"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        header = tensor_header(tensor.name, tensor.datatype, list(tensor.shape))
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"input {header.name!r}: give raw_input_contents or contents, not both"
                )
            array = header.from_bytes(raw[index], f"raw_input_contents[{index}]")
        else:
            field = CONTENTS_FIELDS.get(header.datatype)
            if field is None:
                raise InvalidInput(
                    f"input {header.name!r}: {header.datatype} travels in raw_input_contents only"
                )
            array = header.from_values(list(getattr(tensor.contents, field)))
        if header.name in inputs:
            raise InvalidInput(f"input {header.name!r} is given twice")
        inputs[header.name] = array
    return inputs


def requested_outputs(request: pb.ModelInferRequest) -> tuple[str, ...] | None:
    """The output names asked for, in order; None: every output."""
    return tuple(out.name for out in request.outputs) or None


def encode_model_infer(
    model: str, request_id: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model, model_version=MODEL_VERSION, id=request_id)
    for name, array in outputs.items():
        response.outputs.add(name=name, datatype=NUMPY_TO_V2[array.dtype], shape=array.shape)
        response.raw_output_contents.append(little_endian_bytes(array))
    return response


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.v2_datatype, shape=spec.shape
    )


def model_metadata(model: str, signature: Signature) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=model,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=[_tensor_metadata(s) for s in signature.inputs],
        outputs=[_tensor_metadata(s) for s in signature.outputs],
    )


def model_config(
    model: str,
    signature: Signature,
    parameters: Mapping[str, str],
    max_batch_size: int,
    max_delay_s: float,
) -> pb.ModelConfig:
    """Triton's view of the model. With dynamic batching on (`max_batch_size` > 0) the
    leading dimension is the batch, so `dims` leave it out, as Triton's configs do."""
    skip = 1 if max_batch_size > 0 else 0
    config = pb.ModelConfig(
        name=model,
        platform=PLATFORM,
        max_batch_size=max_batch_size,
        input=[
            pb.ModelInput(name=s.name, data_type=_data_type(s), dims=s.shape[skip:])
            for s in signature.inputs
        ],
        output=[
            pb.ModelOutput(name=s.name, data_type=_data_type(s), dims=s.shape[skip:])
            for s in signature.outputs
        ],
        parameters={k: pb.ModelParameter(string_value=v) for k, v in parameters.items()},
    )
    if max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = round(max_delay_s * 1e6)
    return config


def _data_type(spec: TensorSpec) -> int:
    """V2's FP32 is Triton's TYPE_FP32, and so on."""
    return pb.DataType.Value("TYPE_" + spec.v2_datatype)

"""`inference.GRPCInferenceService`: what each RPC answers for the one served model.

Each RPC takes the request message and returns the response, raising the typed errors of
errors.py; grpc_server.py wraps them with auth (by each RPC's declared access, as the REST
routes declare theirs), metrics, drain tracking and the mapping of errors to status codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from modelzoo_server.draining import Drain
from modelzoo_server.model import ServedModel
from modelzoo_server.protos import grpc_predict_v2_pb2 as pb
from modelzoo_server.routes.access import Access, access
from modelzoo_server.v2_codec import MODEL_VERSION, SERVER_VERSION, check_model, select_outputs
from modelzoo_server.v2_grpc_codec import (
    encode_model_infer,
    model_config,
    model_metadata,
    parse_model_infer,
    requested_outputs,
)

SERVICE = "inference.GRPCInferenceService"
# The rest of Triton's service, which tritonclient.grpc can call: answered UNIMPLEMENTED
# with the reason (the README lists them).
NO_REPOSITORY = "this server loads one model at start; there is no model repository"
NO_SHARED_MEMORY = "shared memory is not supported: send tensors in raw_input_contents"
UNIMPLEMENTED: dict[str, str] = {
    "ModelStreamInfer": "streaming inference is not supported: call ModelInfer",
    "RepositoryIndex": NO_REPOSITORY,
    "RepositoryModelLoad": NO_REPOSITORY,
    "RepositoryModelUnload": NO_REPOSITORY,
    "SystemSharedMemoryStatus": NO_SHARED_MEMORY,
    "SystemSharedMemoryRegister": NO_SHARED_MEMORY,
    "SystemSharedMemoryUnregister": NO_SHARED_MEMORY,
    "CudaSharedMemoryStatus": NO_SHARED_MEMORY,
    "CudaSharedMemoryRegister": NO_SHARED_MEMORY,
    "CudaSharedMemoryUnregister": NO_SHARED_MEMORY,
    "TraceSetting": "trace settings are not supported",
    "LogSettings": "log settings are not supported: the server's --log-level sets them",
}

Handler = Callable[[Message], Awaitable[Message]]


@dataclass(frozen=True)
class Rpc:
    handler: Handler  # declares its Access with routes.access.access
    request: type[Message]


def _version(version: str) -> str | None:
    """An empty version in a request means "the server's choice"."""
    return version or None


class InferenceService:
    def __init__(self, model: ServedModel, drain: Drain) -> None:
        self.model = model
        self.drain = drain

    def rpcs(self) -> dict[str, Rpc]:
        return {
            "ServerLive": Rpc(self.server_live, pb.ServerLiveRequest),
            "ServerReady": Rpc(self.server_ready, pb.ServerReadyRequest),
            "ModelReady": Rpc(self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": Rpc(self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": Rpc(self.model_metadata, pb.ModelMetadataRequest),
            "ModelConfig": Rpc(self.model_config, pb.ModelConfigRequest),
            "ModelStatistics": Rpc(self.model_statistics, pb.ModelStatisticsRequest),
            "ModelInfer": Rpc(self.model_infer, pb.ModelInferRequest),
        }

    @access(Access.METADATA)
    async def server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @access(Access.METADATA)
    async def server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.model.ready and not self.drain.draining)

    @access(Access.METADATA)
    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        check_model(self.model.name, request.name, _version(request.version))
        return pb.ModelReadyResponse(ready=self.model.ready)

    @access(Access.METADATA)
    async def server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="modelzoo", version=SERVER_VERSION)

    @access(Access.METADATA)
    async def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        check_model(self.model.name, request.name, _version(request.version))
        return model_metadata(self.model.name, self.model.entry.signature)

    @access(Access.METADATA)
    async def model_config(self, request: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        check_model(self.model.name, request.name, _version(request.version))
        entry, batcher = self.model.entry, self.model.batcher
        config = model_config(
            self.model.name,
            entry.signature,
            {"task": entry.task, "sha256": entry.sha256 or ""},
            max_batch_size=batcher.max_batch_size if batcher is not None else 0,
            max_delay_s=batcher.max_delay_s if batcher is not None else 0.0,
        )
        return pb.ModelConfigResponse(config=config)

    @access(Access.METADATA)
    async def model_statistics(
        self, request: pb.ModelStatisticsRequest
    ) -> pb.ModelStatisticsResponse:
        """From the Prometheus metrics the server keeps anyway, so the two always agree."""
        if request.name:
            check_model(self.model.name, request.name, _version(request.version))
        registry, labels = self.model.metrics.registry, {"model": self.model.name}

        def sample(name: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        def duration(histogram: str) -> pb.StatisticDuration:
            count = sample(f"modelzoo_{histogram}_duration_seconds_count")
            seconds = sample(f"modelzoo_{histogram}_duration_seconds_sum")
            return pb.StatisticDuration(count=int(count), ns=round(seconds * 1e9))

        stats = pb.ModelStatistics(
            name=self.model.name,
            version=MODEL_VERSION,
            inference_count=int(sample("modelzoo_batch_size_sum")),
            execution_count=int(sample("modelzoo_inference_duration_seconds_count")),
            inference_stats=pb.InferStatistics(
                queue=duration("queue"), compute_infer=duration("inference")
            ),
        )
        return pb.ModelStatisticsResponse(model_stats=[stats])

    @access(Access.INFERENCE)
    async def model_infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        model = self.model
        check_model(model.name, request.model_name, _version(request.model_version))
        with model.admit():
            with model.span("decode"):
                feeds = parse_model_infer(request)
            results = await model.run_tensors(feeds)
        with model.span("encode"):
            outputs = select_outputs(results, requested_outputs(request))
            return encode_model_infer(model.name, request.id, outputs)

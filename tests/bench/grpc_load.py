"""Closed-loop load over the Open Inference Protocol's gRPC service, with the client users
run: `tritonclient.grpc.aio`.

One client (one HTTP/2 channel, as a user's process holds one) carries every concurrent
call of a run; tensors travel as raw bytes (`raw_input_contents`, tritonclient's
`set_data_from_numpy`), answers come back in `raw_output_contents` and are checked after
the clock stops, like the REST ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio

from modelzoo_server.signature import NUMPY_TO_V2
from tests.bench.loadgen import Load, closed_loop

# Pings only while calls are open (the server's default ping policy refuses idle pings),
# so a channel that sits idle between slices is not dropped for pinging too often.
KEEPALIVE = triton_grpc.KeepAliveOptions(
    keepalive_time_ms=30_000, keepalive_timeout_ms=20_000, keepalive_permit_without_calls=False
)


@dataclass(frozen=True)
class GrpcRequest:
    tensors: tuple[tuple[str, np.ndarray], ...]  # inputs, in the signature's order
    # Raises WrongAnswer unless the outputs are right; None: any answer is.
    check: Callable[[Mapping[str, np.ndarray]], None] | None = None


def _inputs(request: GrpcRequest) -> list[triton_grpc.InferInput]:
    """Serialized once per run: each call then copies the bytes into its message."""
    inputs = []
    for name, array in request.tensors:
        tensor = triton_grpc.InferInput(name, list(array.shape), NUMPY_TO_V2[array.dtype])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


async def _grpc(
    address: str,
    model: str,
    requests: Sequence[GrpcRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
) -> Load:
    prepared = [_inputs(r) for r in requests]
    timeout = max(120.0, cap_s * 2)
    client = triton_grpc_aio.InferenceServerClient(address, keepalive_options=KEEPALIVE)
    try:
        # Connects the channel before the clock starts, without an inference.
        if not await client.is_server_ready():
            raise RuntimeError(f"gRPC server at {address} is not ready")

        async def send(index: int) -> float:
            slot = index % len(requests)
            sent = time.perf_counter()
            result = await client.infer(model, prepared[slot], client_timeout=timeout)
            latency = time.perf_counter() - sent
            check = requests[slot].check
            if check is not None:
                outputs = result.get_response().outputs
                check({o.name: result.as_numpy(o.name) for o in outputs})
            return latency

        return await closed_loop(send, concurrency, total, cap_s, warmup)
    finally:
        await client.close()


def drive_grpc(
    address: str,
    model: str,
    requests: Sequence[GrpcRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
) -> Load:
    """Send `total` ModelInfer calls (cycling through `requests`) from `concurrency`
    clients sharing one channel to `address` (host:port)."""
    return asyncio.run(_grpc(address, model, requests, concurrency, total, cap_s, warmup))

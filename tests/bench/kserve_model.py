"""The same frozen graph behind KServe's Python `ModelServer`: what a user would run instead.

Runs in KServe's own venv (see venvs.py), never in the project's, so it imports nothing
from ModelZoo. Two set-ups of one model:

- naive (the default): the graph pruned to the signature's tensors (tf.compat.v1
  wrap_function, then prune) and a plain, synchronous `predict` that KServe calls on its
  event loop, the way KServe's custom-model documentation shows it.
- `--tuned`: what a KServe user tuning for throughput would write: the pruned function
  given an input signature, as ModelZoo's TensorFlow runtime does, and an async `predict`
  that hands the graph call to the loop's executor (KServe's `--max_asyncio_workers`), so
  the event loop keeps decoding and answering while TensorFlow runs.

    python kserve_model.py --graph G.pb --signature S.json --model_name NAME \
        --http_port P --grpc_port Q [--tuned]

`S.json` is {"inputs": [{"name", "tensor", "dtype"}], "outputs": [...]} (the catalog's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid

V2_DATATYPES = {"float32": "FP32", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}


class FrozenGraphModel(Model):
    """The naive set-up: pruned graph, synchronous `predict`."""

    def __init__(self, name: str, graph: Path, signature: dict) -> None:
        super().__init__(name)
        self.graph = graph
        self.inputs = signature["inputs"]
        self.outputs = signature["outputs"]
        self.ready = False

    def load(self) -> bool:
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(self.graph.read_bytes())
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), []
        )
        feeds = [wrapped.graph.get_tensor_by_name(s["tensor"]) for s in self.inputs]
        fetches = [wrapped.graph.get_tensor_by_name(s["tensor"]) for s in self.outputs]
        self._fn = self.prune(wrapped, feeds, fetches)
        self.ready = True
        return self.ready

    def prune(self, wrapped, feeds: list, fetches: list):
        return wrapped.prune(feeds=feeds, fetches=fetches)

    def arguments(self, payload: InferRequest) -> list:
        given = {tensor.name: tensor for tensor in payload.inputs}
        return [
            tf.convert_to_tensor(np.asarray(given[s["name"]].as_numpy(), dtype=s["dtype"]))
            for s in self.inputs
        ]

    def response(self, payload: InferRequest, results) -> InferResponse:
        outputs = []
        for spec, result in zip(self.outputs, results, strict=True):
            array = result.numpy()
            output = InferOutput(
                name=spec["name"], shape=list(array.shape), datatype=V2_DATATYPES[spec["dtype"]]
            )
            output.set_data_from_numpy(array)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        return self.response(payload, self._fn(*self.arguments(payload)))


class TunedFrozenGraphModel(FrozenGraphModel):
    """The tuned set-up: input signature on the pruned function, async `predict`."""

    def prune(self, wrapped, feeds: list, fetches: list):
        # As ModelZoo's runtime: with a structured input signature TF binds each call's
        # tensors at once instead of failing a structured bind first (about 1 ms a call).
        input_signature = ([tf.TensorSpec.from_tensor(t) for t in feeds], {})
        return wrapped.prune(feeds=feeds, fetches=fetches, input_signature=input_signature)

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        arguments = self.arguments(payload)
        # None: the default executor, which KServe sizes with --max_asyncio_workers.
        results = await asyncio.get_running_loop().run_in_executor(None, self._fn, *arguments)
        return self.response(payload, results)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--graph", type=Path, required=True)
    parser.add_argument("--signature", type=Path, required=True)
    parser.add_argument("--tuned", action="store_true", help="the tuned set-up (see above)")
    args, _ = parser.parse_known_args()
    kind = TunedFrozenGraphModel if args.tuned else FrozenGraphModel
    model = kind(args.model_name, args.graph, json.loads(args.signature.read_text()))
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()

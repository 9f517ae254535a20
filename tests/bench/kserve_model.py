"""The same frozen graph behind KServe's Python `ModelServer`: what a user would run instead.

Runs in KServe's own venv (see venvs.py), never in the project's, so it imports nothing
from ModelZoo. It loads the .pb the way ModelZoo does (tf.compat.v1 wrap_function, then
prune to the signature's tensors) and implements `predict` for Open Inference Protocol
(V2) requests, the way KServe's custom-model documentation shows: a plain, synchronous
`predict` that KServe calls on its event loop.

    python kserve_model.py --graph G.pb --signature S.json --model_name NAME \
        --http_port P --enable_grpc false

`S.json` is {"inputs": [{"name", "tensor", "dtype"}], "outputs": [...]} (the catalog's).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid

V2_DATATYPES = {"float32": "FP32", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}


class FrozenGraphModel(Model):
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
        self._fn = wrapped.prune(feeds=feeds, fetches=fetches)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        given = {tensor.name: tensor for tensor in payload.inputs}
        args = [
            tf.convert_to_tensor(np.asarray(given[s["name"]].as_numpy(), dtype=s["dtype"]))
            for s in self.inputs
        ]
        results = self._fn(*args)
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


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--graph", type=Path, required=True)
    parser.add_argument("--signature", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model = FrozenGraphModel(args.model_name, args.graph, json.loads(args.signature.read_text()))
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()

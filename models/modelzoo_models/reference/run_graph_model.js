#!/usr/bin/env node
// Runs an ORIGINAL TF.js graph model with pure-JS @tensorflow/tfjs (cpu backend): the
// reference our converted frozen graphs are compared against.
//
//   node run_graph_model.js <node_modules> <model.json> <exchange-dir>
//
// <exchange-dir>/request.json:
//   {"outputs": ["node/name", ...],
//    "runs": [{"inputs": [{"name": "node/name", "dtype": "float32", "shape": [1, 2, 3],
//                          "file": "in-0-0.bin"}]}, ...]}
// Each input file holds the tensor's raw little-endian values. The script writes the
// outputs the same way and lists them in <exchange-dir>/response.json:
//   {"backend": "cpu", "tfjs": "4.22.0",
//    "runs": [{"ms": 12.3, "outputs": [{"name", "dtype", "shape", "file"}]}]}
'use strict';

const fs = require('fs');
const path = require('path');

const ARRAYS = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function loader(modelJson) {
  // tf.loadGraphModel's own file:// handler needs tfjs-node; read the files ourselves.
  return {
    load: async () => {
      const spec = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
      const weightSpecs = [];
      const buffers = [];
      for (const group of spec.weightsManifest || []) {
        weightSpecs.push(...group.weights);
        for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelJson), shard)));
      }
      const data = Buffer.concat(buffers);
      return {
        modelTopology: spec.modelTopology,
        format: spec.format,
        generatedBy: spec.generatedBy,
        convertedBy: spec.convertedBy,
        signature: spec.signature,
        userDefinedMetadata: spec.userDefinedMetadata,
        weightSpecs,
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      };
    },
  };
}

async function main() {
  const [nodeModules, modelJson, exchange] = process.argv.slice(2);
  if (!exchange) throw new Error('usage: run_graph_model.js <node_modules> <model.json> <exchange-dir>');
  const tf = require(path.join(path.resolve(nodeModules), '@tensorflow', 'tfjs'));
  await tf.setBackend('cpu');
  await tf.ready();
  const request = JSON.parse(fs.readFileSync(path.join(exchange, 'request.json'), 'utf8'));
  const model = await tf.loadGraphModel(loader(path.resolve(modelJson)));
  const response = { backend: tf.getBackend(), tfjs: tf.version.tfjs, runs: [] };
  for (const [r, run] of request.runs.entries()) {
    const feeds = {};
    for (const input of run.inputs) {
      const Array_ = ARRAYS[input.dtype];
      if (!Array_) throw new Error(`input ${input.name}: unsupported dtype ${input.dtype}`);
      const raw = fs.readFileSync(path.join(exchange, input.file));
      const values = new Array_(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      feeds[input.name] = tf.tensor(values, input.shape, input.dtype);
    }
    const started = process.hrtime.bigint();
    let results = model.execute(feeds, request.outputs);
    if (!Array.isArray(results)) results = [results];
    const outputs = [];
    for (const [o, tensor] of results.entries()) {
      const values = await tensor.data();
      const file = `out-${r}-${o}.bin`;
      fs.writeFileSync(path.join(exchange, file), Buffer.from(values.buffer, values.byteOffset, values.byteLength));
      outputs.push({ name: request.outputs[o], dtype: tensor.dtype, shape: tensor.shape, file });
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    tf.dispose([...Object.values(feeds), ...results]);
    response.runs.push({ ms, outputs });
  }
  fs.writeFileSync(path.join(exchange, 'response.json'), JSON.stringify(response, null, 1));
}

main().catch((error) => {
  process.stderr.write(`run_graph_model.js: ${error.stack || error}\n`);
  process.exit(1);
});

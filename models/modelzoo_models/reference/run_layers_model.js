// Runs an original TF.js layers model, as its npm package loads it, with the pure-JS
// `@tensorflow/tfjs` CPU backend: the reference the zoo's frozen graphs are checked against.
//
// Usage:
//   node run_layers_model.js <node_modules> <request.json>
// request.json:
//   { "model": "nsfwjs:MobileNetV2",
//     "runs": [ { "kind": "tensor", "input": "x.bin", "shape": [N, 224, 224, 3],
//                 "output": "y.bin" },
//               { "kind": "image", "input": "img.bin", "shape": [H, W, 3],
//                 "output": "z.bin" } ] }
// - kind "tensor": `input` holds float32 little-endian values, fed as they are to the
//   package's own loaded model (`model.predict`, the layers model nsfwjs built);
// - kind "image": `input` holds RGB uint8 pixels, classified by the package's own
//   pipeline (nsfwjs `infer`: /255, resizeBilinear(alignCorners=true) to 224, predict).
// Each run writes the model's output as float32 little-endian to `output`, and the
// script prints one JSON line {"shapes": [...], "backend": "cpu"} on success.
"use strict";

const fs = require("fs");
const path = require("path");

function readFloat32(file) {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function writeFloat32(file, typed) {
  fs.writeFileSync(file, Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength));
}

async function loadNsfwjs(modules, tf, name) {
  const nsfwjs = require(path.join(modules, "nsfwjs"));
  // Quiet the package's console banner: stdout carries this script's answer.
  const info = console.info;
  console.info = () => {};
  try {
    return await nsfwjs.load(name);
  } finally {
    console.info = info;
  }
}

async function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write("usage: node run_layers_model.js <node_modules> <request.json>\n");
    return 2;
  }
  const [modules, requestFile] = argv.map((p) => path.resolve(p));
  const request = JSON.parse(fs.readFileSync(requestFile, "utf8"));
  const base = path.dirname(requestFile);
  const tf = require(path.join(modules, "@tensorflow", "tfjs"));
  await tf.setBackend("cpu");
  await tf.ready();

  const [source, name] = String(request.model).split(":");
  if (source !== "nsfwjs") throw new Error(`unknown model source ${source}`);
  const classifier = await loadNsfwjs(modules, tf, name);

  const shapes = [];
  for (const run of request.runs) {
    const input = path.resolve(base, run.input);
    let result;
    if (run.kind === "tensor") {
      const x = tf.tensor(readFloat32(input), run.shape, "float32");
      result = classifier.model.predict(x);
      x.dispose();
    } else if (run.kind === "image") {
      const pixels = new Int32Array(fs.readFileSync(input));
      const image = tf.tensor3d(pixels, run.shape, "int32");
      result = classifier.infer(image);
      image.dispose();
    } else {
      throw new Error(`unknown run kind ${run.kind}`);
    }
    writeFloat32(path.resolve(base, run.output), await result.data());
    shapes.push(result.shape);
    result.dispose();
  }
  process.stdout.write(JSON.stringify({ shapes, backend: tf.getBackend() }) + "\n");
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`run_layers_model: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  },
);

// Unpacks one of nsfwjs's bundled TF.js layers models into plain files.
//
// nsfwjs ships each model as CommonJS/UMD `.min.js` files: `model.min.js`
// exports the model.json object (Keras topology + weights manifest) and each
// `<shard>.min.js` exports that weight shard as a base64 string. This script
// loads them with Node's `require` (as nsfwjs itself does) and writes:
//   <out>/model.json      the model.json object, as JSON
//   <out>/<shard>.bin     each shard's decoded bytes, for every path in the manifest
//
// Usage: node nsfwjs_extract.js <nsfwjs model folder> <out folder>
"use strict";

const fs = require("fs");
const path = require("path");

function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write("usage: node nsfwjs_extract.js <model dir> <out dir>\n");
    return 2;
  }
  const [modelDir, outDir] = argv.map((p) => path.resolve(p));
  const model = require(path.join(modelDir, "model.min.js"));
  if (!model || typeof model !== "object" || !model.modelTopology || !model.weightsManifest) {
    throw new Error(`${modelDir}/model.min.js does not export a model.json object`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const group of model.weightsManifest) {
    for (const shard of group.paths) {
      if (!/^[A-Za-z0-9_.-]+$/.test(shard)) throw new Error(`odd shard name ${shard}`);
      const base64 = require(path.join(modelDir, `${shard}.min.js`));
      if (typeof base64 !== "string") throw new Error(`${shard}.min.js does not export a string`);
      fs.writeFileSync(path.join(outDir, `${shard}.bin`), Buffer.from(base64, "base64"));
    }
  }
  fs.writeFileSync(path.join(outDir, "model.json"), JSON.stringify(model));
  return 0;
}

process.exitCode = main(process.argv.slice(2));

// Runs the original face-api.js age/gender network (TF.js, pure-JS CPU backend) on 112x112 RGB
// inputs prepared by tools/record_faceapi_reference.py, and writes its outputs as JSON.
//   node tools/faceapi/record_reference.mjs DIR OUT   (DIR holds inputs.json and one N.rgb per input)
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

const [dir, out] = process.argv.slice(2);
const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
await tf.setBackend('cpu');
await tf.ready();

const manifest = JSON.parse(readFileSync(path.join(modelDir, 'age_gender_model-weights_manifest.json')));
const bin = readFileSync(path.join(modelDir, 'age_gender_model.bin'));
const weights = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length), manifest[0].weights);
const net = faceapi.nets.ageGenderNet;
net.loadFromWeightMap(weights);

const inputs = JSON.parse(readFileSync(path.join(dir, 'inputs.json')));
const results = [];
for (const [i, item] of inputs.entries()) {
  const pixels = readFileSync(path.join(dir, `${i}.rgb`));
  const image = tf.tensor3d(new Uint8Array(pixels), [112, 112, 3], 'int32');
  // runNet: the network before its softmax, i.e. the gender logits in face-api's order (male, female).
  const out = net.runNet(await faceapi.toNetInput(image));
  const probabilities = tf.softmax(out.gender);
  results.push({
    ...item,
    gender_logits: Array.from(await out.gender.data()),
    gender_probabilities: Array.from(await probabilities.data()),
    age: (await out.age.data())[0],
  });
  tf.dispose([image, out.gender, out.age, probabilities]);
}
const facePackage = JSON.parse(readFileSync(path.join(modelDir, '..', 'package.json')));
writeFileSync(out, JSON.stringify({
  recorded_with: { 'face-api': facePackage.version, tfjs: tf.version_core, backend: tf.getBackend(), node: process.version },
  class_order: ['male', 'female'],
  results,
}, null, 1));

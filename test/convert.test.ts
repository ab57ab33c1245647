// Conversion identities: TransMLA's GQA ⊂ MLA equivalence at the teacher's cache size reproduces the teacher's logits,
// absorbed decoding matches the naive path, and the cache holds exactly r_kv + d_r values per token per MLA layer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relError } from '../src/tensor/tensor.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { noGrad } from '../src/autograd/var.js';
import { getBackend, availableBackends } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { KVCache } from '../src/model/cache.js';
import { generate, sampleToken } from '../src/model/generate.js';
import { kvBytesPerToken } from '../src/model/config.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { ROPE_METHODS } from '../src/convert/rope-select.js';
import { BASIS_METHODS } from '../src/convert/basis.js';
import { saveModelDir, loadDeepseekModel } from '../src/io/deepseek.js';
import { STORIES_BIN, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false, nopeInit: 'mean-rotation', keepLayers: [],
    calib: { samples: 3, length: 48, seed: 7 }, ...over,
  };
}

function logits(m: Model, ids: Int32Array, B: number, T: number): Float32Array | Float64Array {
  return noGrad(() => forward(m, ids, B, T).value.data);
}

function sampleIds(V: number, n: number, seed: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

const stories = () => {
  const { config, weights } = loadLlama2c(STORIES_BIN);
  return Model.fromWeights(config, weights, be);
};

for (const [name, make] of [['stories260K', stories], ['HF llama GQA', () => randomLlama(3)], ['qwen2-style bias', () => randomLlama(4, true)]] as const) {
  for (const basis of BASIS_METHODS) {
    test(`GQA ⊂ MLA: transmla at the teacher's cache size reproduces the teacher (${name}, ${basis})`, () => {
      const teacher = make();
      const a = teacher.config.layers[0]!;
      assert.equal(a.kind, 'gqa');
      const KD = a.kind === 'gqa' ? a.numKvHeads * a.headDim : 0;
      const r = convert(teacher, null, opts({ plan: { kind: 'rank', rank: KD }, ropeDim: KD, basis, ropeRule: 'free' }));
      const student = Model.fromWeights(r.config, r.weights, be);
      assert.equal(r.compression, 1);
      const ids = sampleIds(teacher.config.vocabSize, 2 * 37, 11);
      const err = relError(logits(student, ids, 2, 37), logits(teacher, ids, 2, 37));
      assert.ok(err <= 1e-5, `relative logit error ${err}`);
    });
  }
}

for (const method of ROPE_METHODS) {
  test(`absorbed decoding equals the naive path and the cache holds r_kv + d_r per token (${method})`, () => {
    const teacher = stories();
    const r = convert(teacher, null, opts({ ropeMethod: method, plan: { kind: 'ratio', ratio: 4 }, ropeDim: 4, basis: 'weight' }));
    const m = Model.fromWeights(r.config, r.weights, be);
    const T = 23;
    const ids = sampleIds(m.config.vocabSize, T, 5);
    const full = logits(m, ids, 1, T);
    const V = m.config.vocabSize;
    noGrad(() => {
      const cache = new KVCache(m, 1, T);
      // Prefill 9 tokens, then decode one at a time.
      const pre = forward(m, ids.subarray(0, 9), 1, 9, { cache }).value.data;
      assert.ok(relError(pre, full.subarray(0, 9 * V)) <= 1e-5);
      for (let t = 9; t < T; t++) {
        const step = forward(m, ids.subarray(t, t + 1), 1, 1, { cache }).value.data;
        const err = relError(step, full.subarray(t * V, (t + 1) * V));
        assert.ok(err <= 1e-5, `position ${t}: relative error ${err}`);
      }
      assert.equal(cache.bytesPerToken(), kvBytesPerToken(m.config, 4));
      const perLayer = m.config.layers.map((l) => (l.kind === 'mla' ? l.kvRank + l.ropeDim : -1));
      assert.equal(cache.bytesPerToken(), perLayer.reduce((s, x) => s + x * 4, 0));
    });
    assert.ok(Math.abs(r.compression - 4) < 0.5, `compression ${r.compression}`);
  });
}

test('converted model round-trips through the native DeepSeek-V3 layout', () => {
  const teacher = randomLlama(9, true);
  const r = convert(teacher, null, opts({ ropeMethod: 'mha2mla', plan: { kind: 'energy', delta: 0.9 }, ropeDim: 4, keepLayers: [1], latentNorm: true }));
  const { dir, cleanup } = tempDir();
  try {
    saveModelDir(`${dir}/m`, r.config, r.weights);
    const back = loadDeepseekModel(`${dir}/m`);
    assert.deepEqual(back.config, r.config);
    const a = Model.fromWeights(r.config, r.weights, be);
    const b = Model.fromWeights(back.config, back.weights, be);
    const ids = sampleIds(61, 20, 3);
    assert.deepEqual(Array.from(logits(b, ids, 1, 20)), Array.from(logits(a, ids, 1, 20)));
  } finally {
    cleanup();
  }
});

test('a cpu model gives the same converted logits as ref', { skip: !availableBackends().includes('cpu') && 'cpu backend not built' }, () => {
  const teacher = stories();
  const r = convert(teacher, null, opts({ plan: { kind: 'ratio', ratio: 6.4 }, ropeDim: 4 }));
  const ids = sampleIds(512, 40, 2);
  const ref = logits(Model.fromWeights(r.config, r.weights, be), ids, 1, 40);
  const cpu = logits(Model.fromWeights(r.config, r.weights, getBackend('cpu')), ids, 1, 40);
  assert.ok(relError(cpu, ref) <= 1e-5);
});

test('greedy generation with the absorbed latent cache equals greedy decoding by full naive forwards', () => {
  const teacher = stories();
  const r = convert(teacher, null, opts({ plan: { kind: 'ratio', ratio: 6.4 }, ropeDim: 4, latentNorm: true, qRank: 24 }));
  const m = Model.fromWeights(r.config, r.weights, be);
  const prompt = [1, 403, 261];
  const cached = generate(m, prompt, { maxTokens: 30, temperature: 0, topP: 1, seed: 0 });
  const naive: number[] = [];
  const V = m.config.vocabSize;
  noGrad(() => {
    const ids = [...prompt];
    for (let i = 0; i < 30; i++) {
      const logits = forward(m, Int32Array.from(ids), 1, ids.length).value.data.subarray((ids.length - 1) * V, ids.length * V);
      const next = sampleToken(logits, 0, 1, () => 0);
      naive.push(next);
      ids.push(next);
    }
  });
  assert.deepEqual(cached, naive);
});

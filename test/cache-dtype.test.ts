// Cache dtypes (--cache-dtype): quantise → dequantise error bounds against f64 values, decoding with each dtype
// against the f32 cache (GQA and MLA), and the cache's byte counts against the formula.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { refBackend } from '../src/backends/ref/index.js';
import { Model } from '../src/model/model.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { QuantRows, CACHE_DTYPES, type CacheDtype, type RowLayout } from '../src/model/cache-dtype.js';
import { KVCache, kvBytesPerTokenFor } from '../src/model/cache.js';
import { forward } from '../src/model/forward.js';
import { noGrad } from '../src/autograd/var.js';
import { randomLlama } from './models.js';
import { mla, mlaOk, STORIES_BIN, STORIES_TOK } from './helpers.js';

/** A random MLA model (full-rank query, latent norm), on the f64 ref backend; weights N(0, 0.2²) ≈ 1/√C. */
function randomMla(seed: number): Model {
  const rng = mulberry32(seed);
  const cfg: ModelConfig = {
    arch: 'deepseek_v3', vocabSize: 53, hiddenSize: 40, intermediateSize: 56, numLayers: 2, numHeads: 4,
    rmsNormEps: 1e-6, ropePairing: 'adjacent', ropeInvFreq: defaultInvFreq(10000, 10), ropeTheta: 10000, ropeScaling: null,
    maxPositions: 64, tieEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
    layers: [0, 1].map(() => ({
      kind: 'mla' as const, kvRank: 11, ropeDim: 4, nopeDim: 6, vDim: 10, qRank: null, latentNorm: true, bias: false,
      ropeInvFreq: defaultInvFreq(10000, 4),
    })),
  };
  const w = new Map<string, Tensor>();
  for (const s of modelTensors(cfg)) {
    const t = Tensor.zeros(s.shape);
    const isNorm = s.shape.length === 1;
    for (let i = 0; i < t.size; i++) t.data[i] = isNorm ? 1 + 0.1 * gaussian(rng) : 0.2 * gaussian(rng);
    w.set(s.name, t);
  }
  return Model.fromWeights(cfg, w, refBackend);
}

const LAYOUTS: RowLayout[] = [
  { width: 15, quantCols: 11, groups: 1 }, // MLA-like: latent 11 + rope 4
  { width: 12, quantCols: 12, groups: 4 }, // GQA-like: 4 heads × 3
  { width: 7, quantCols: 7, groups: 7 }, // one value per group (odd)
];

test('quantise → dequantise: int8 |err| ≤ scale/2, f16 / bf16 within half an ulp, int8 tail in bf16', () => {
  const rng = mulberry32(3);
  for (const l of LAYOUTS) {
    const B = 2, S = 5, T = 3, P = 1;
    // Mixed magnitudes per row, and one all-zero row (scale 0).
    const x = Float64Array.from({ length: B * T * l.width }, (_, i) => (i < l.width ? 0 : gaussian(rng) * 10 ** ((i % 5) - 2)));
    for (const dtype of ['f16', 'bf16', 'int8'] as const) {
      const rows = new QuantRows(dtype, B, S, l);
      rows.write(x, B, T, P);
      const out = new Float64Array(B * S * l.width).fill(NaN);
      rows.read(out, P + T);
      const gw = l.quantCols / l.groups;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const src = (b * T + t) * l.width;
          const dst = (b * S + P + t) * l.width;
          for (let g = 0; g < l.groups; g++) {
            let a = 0;
            for (let j = 0; j < gw; j++) a = Math.max(a, Math.abs(x[src + g * gw + j]!));
            for (let j = 0; j < gw; j++) {
              const v = x[src + g * gw + j]!;
              const e = Math.abs(out[dst + g * gw + j]! - v);
              const bound = dtype === 'int8' ? (a / 127 / 2) * (1 + 1e-6) : Math.abs(v) * (dtype === 'f16' ? 2 ** -11 : 2 ** -8) + (dtype === 'f16' ? 2 ** -25 : 0);
              assert.ok(e <= bound, `${dtype} ${JSON.stringify(l)}: |${out[dst + g * gw + j]} − ${v}| = ${e} > ${bound}`);
            }
          }
          for (let j = l.quantCols; j < l.width; j++) {
            const v = x[src + j]!;
            const e = Math.abs(out[dst + j]! - v);
            const rel = dtype === 'f16' ? 2 ** -11 : 2 ** -8;
            assert.ok(e <= Math.abs(v) * rel + (dtype === 'f16' ? 2 ** -25 : 0), `${dtype} tail: ${e}`);
          }
        }
      }
      // The all-zero row (b 0, t 0) comes back exactly; an unwritten position reads as zeros; positions at or past
      // the read length stay untouched.
      for (let j = 0; j < l.width; j++) assert.equal(out[P * l.width + j], 0);
      for (let j = 0; j < l.width; j++) assert.equal(out[j], 0);
      assert.ok(Number.isNaN(out[(P + T) * l.width]!), 'a position past the read length was written');
    }
  }
});

/** Logits of prefill (5 tokens) then 4 single-token decode steps through a cache of `dtype`: one (V) row per step. */
function decodeLogits(model: Model, dtype: CacheDtype): Float64Array[] {
  const rng = mulberry32(11);
  const V = model.config.vocabSize;
  const ids = Int32Array.from({ length: 9 }, () => Math.floor(rng() * V));
  return noGrad(() => {
    const cache = new KVCache(model, 1, 9, dtype);
    const out: Float64Array[] = [];
    const pre = forward(model, ids.subarray(0, 5), 1, 5, { cache }).value.data;
    out.push(Float64Array.from(pre.subarray(4 * V, 5 * V)));
    for (let t = 5; t < 9; t++) out.push(Float64Array.from(forward(model, ids.subarray(t, t + 1), 1, 1, { cache }).value.data));
    return out;
  });
}

const relErr = (a: Float64Array, b: Float64Array): number => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  return Math.sqrt(num / den);
};

/** Bounds on the logit relative error against the f32 cache: half-precision rows ≤ 1e-2 (the brief's), int8 ≤ 3e-2. */
const BOUND: Record<Exclude<CacheDtype, 'f32'>, number> = { f16: 1e-2, bf16: 1e-2, int8: 3e-2 };

for (const [name, make] of [['GQA', () => randomLlama(7, true)], ['MLA', () => randomMla(8)]] as const) {
  test(`decode with each cache dtype against the f32 cache (${name}): logits within the stated bounds`, () => {
    const model = make();
    const ref = decodeLogits(model, 'f32');
    for (const dtype of ['f16', 'bf16', 'int8'] as const) {
      const got = decodeLogits(model, dtype);
      got.forEach((g, s) => {
        const e = relErr(g, ref[s]!);
        assert.ok(e <= BOUND[dtype], `${name} ${dtype} step ${s}: logit relative error ${e} > ${BOUND[dtype]}`);
        assert.ok(e > 0 || dtype !== 'int8', `${name} int8 step ${s}: identical logits: the cache was not quantised`);
      });
    }
  });
}

test('cache bytes follow the formula: f16/bf16 2 bytes a value; int8 1 + scales (+ bf16 rope part for MLA)', () => {
  const gqa = randomLlama(9); // 2 layers, Hkv 2, D 12
  const mla = randomMla(10); // 2 layers, R 11, Dr 4
  const formula: Record<CacheDtype, [number, number]> = {
    f32: [2 * 2 * 2 * 12 * 4, 2 * (11 + 4) * 4],
    f16: [2 * 2 * 2 * 12 * 2, 2 * (11 + 4) * 2],
    bf16: [2 * 2 * 2 * 12 * 2, 2 * (11 + 4) * 2],
    int8: [2 * 2 * (2 * 12 + 4 * 2), 2 * (11 + 4 + 2 * 4)],
  };
  for (const dtype of CACHE_DTYPES) {
    assert.equal(kvBytesPerTokenFor(gqa.config, dtype), formula[dtype][0], `GQA ${dtype}`);
    assert.equal(kvBytesPerTokenFor(mla.config, dtype), formula[dtype][1], `MLA ${dtype}`);
    if (dtype === 'f32') continue; // the ref backend keeps an f32 cache in f64
    noGrad(() => {
      for (const [m, k] of [[gqa, 0], [mla, 1]] as const) {
        const c: KVCache = new KVCache(m, 3, 7, dtype);
        assert.equal(c.bytes(), formula[dtype][k] * 3 * 7, `${dtype} KVCache.bytes()`);
        assert.equal(c.bytesPerToken(), formula[dtype][k]);
      }
    });
  }
});

test('CLI: info prints KV bytes per --cache-dtype; a bad --cache-dtype names the flag', () => {
  const info = JSON.parse(mlaOk(['info', STORIES_BIN, '--json'])) as { kv_bytes_per_token_by_dtype: Record<string, number> };
  // stories260K: 5 layers, K and V of 4 kv heads × 8: f32 4·64·5, int8 (32 + 4·4)·2·5.
  assert.deepEqual(info.kv_bytes_per_token_by_dtype, { f32: 1280, f16: 640, bf16: 640, int8: 480 });
  const r = mla(['generate', STORIES_BIN, '--tokenizer', STORIES_TOK, '--cache-dtype', 'fp8']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--cache-dtype fp8: expected one of f32, f16, bf16, int8/);
  const g = mlaOk(['generate', STORIES_BIN, '--tokenizer', STORIES_TOK, '--cache-dtype', 'int8', '--max-tokens', '8']);
  assert.ok(g.length > 0);
});

// xKV layers (a group of MLA layers sharing the first layer's latent): the absorbed decode over the shared latent
// equals the full forward, the cache holds R + Dr for the group's first layer and Dr for each later one, gradients
// reach the first layer's kv_a through the later layers, the native layout round-trips, inconsistent groups are
// refused, `mla info` counts the bytes, and every export and the torch engine refuse the model with why.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { noGrad, backward } from '../src/autograd/var.js';
import { refBackend } from '../src/backends/ref/index.js';
import type { Backend } from '../src/tensor/backend.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { KVCache, kvBytesPerTokenFor } from '../src/model/cache.js';
import { CACHE_DTYPES } from '../src/model/cache-dtype.js';
import { defaultInvFreq, kvBytesPerToken, type LayerAttention, type MlaAttention, type ModelConfig, type XkvAttention } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { saveModelDir, loadDeepseekModel } from '../src/io/deepseek.js';
import { describe } from '../src/cli/info.js';
import { planGguf } from '../src/export/gguf-export.js';
import { exportHf } from '../src/export/hf-export.js';
import { assertTorchKinds } from '../src/train/torch-kinds.js';
import { UserError } from '../src/errors.js';
import { join } from 'node:path';
import { STORIES_BIN, STORIES_TOK, mla, mlaOk, tempDir } from './helpers.js';
import { randomLlama } from './models.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { convertSharedLatent, latentGroups } from '../src/convert/xkv.js';

const be = refBackend;
/** The reference backend in float64 activations (gradient checks), as autograd.test.ts. */
const ref64: Backend = { ...refBackend, dtype: 'f64', run: refBackend.run.bind(refBackend) };
const C = 24;
const H = 4;

const mlaLayer = (R: number, over: Partial<MlaAttention> = {}): MlaAttention => ({
  kind: 'mla', kvRank: R, ropeDim: 4, nopeDim: 6, vDim: 5, qRank: null, latentNorm: false, bias: false, ropeInvFreq: [1, 0.1], ...over,
});
const xkvLayer = (source: number, R: number, over: Partial<XkvAttention> = {}): XkvAttention => ({
  kind: 'xkv', source, kvRank: R, ropeDim: 4, nopeDim: 6, vDim: 5, qRank: null, bias: false, ropeInvFreq: [1, 0.1], ...over,
});

/** Layers: a group of 2 (latent norm on the first; the second with a low-rank query and biases), a GQA layer, a
 *  group of 3 with its own geometry (rope dims 2, other nope/value dims). */
const LAYERS: LayerAttention[] = [
  mlaLayer(7, { latentNorm: true }),
  xkvLayer(0, 7, { qRank: 10, bias: true, nopeDim: 3, vDim: 7 }),
  { kind: 'gqa', numKvHeads: 2, headDim: 6, qkvBias: false },
  mlaLayer(9, { ropeDim: 2, ropeInvFreq: [0.5] }),
  xkvLayer(3, 9, { ropeDim: 6, ropeInvFreq: [1, 0.3, 0.05] }),
  xkvLayer(3, 9, { nopeDim: 0 }),
];

function config(layers: LayerAttention[] = LAYERS): ModelConfig {
  return {
    arch: 'deepseek_v3', vocabSize: 37, hiddenSize: C, intermediateSize: 32, numLayers: layers.length, numHeads: H,
    rmsNormEps: 1e-6, ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 6), ropeTheta: 10000, ropeScaling: null,
    maxPositions: 64, tieEmbeddings: false, bosTokenId: 1, eosTokenId: 2, layers,
  };
}

function randomWeights(cfg: ModelConfig, seed: number): Map<string, Tensor> {
  const rng = mulberry32(seed);
  const w = new Map<string, Tensor>();
  for (const s of modelTensors(cfg)) {
    const t = Tensor.zeros(s.shape, 'f64');
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    for (let i = 0; i < t.size; i++) t.data[i] = isNorm ? 1 + 0.1 * gaussian(rng) : 0.35 * gaussian(rng);
    w.set(s.name, t);
  }
  return w;
}

function ids(n: number, seed: number, V = 37): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

test('xKV: absorbed decode over the shared latent equals the full forward (batch 1 and 2), the cache holds R + Dr then Dr', () => {
  const cfg = config();
  const m = Model.fromWeights(cfg, randomWeights(cfg, 3), be);
  const V = cfg.vocabSize;
  for (const B of [1, 2]) {
    const T = 11;
    const x = ids(B * T, 5 + B);
    const full = noGrad(() => forward(m, x, B, T).value.data);
    const cache = new KVCache(m, B, T);
    const P0 = 4; // a prefill of 4, then one token at a time
    const rows = (from: number, to: number): Int32Array => Int32Array.from({ length: B * (to - from) }, (_, k) => x[Math.floor(k / (to - from)) * T + from + (k % (to - from))]!);
    const pre = noGrad(() => forward(m, rows(0, P0), B, P0, { cache }).value.data);
    for (let b = 0; b < B; b++) {
      const err = relError(pre.subarray(b * P0 * V, (b + 1) * P0 * V), full.subarray(b * T * V, (b * T + P0) * V));
      assert.ok(err <= 1e-5, `prefill batch row ${b}: relative error ${err}`); // f32 activations
    }
    for (let t = P0; t < T; t++) {
      const step = noGrad(() => forward(m, rows(t, t + 1), B, 1, { cache }).value.data);
      for (let b = 0; b < B; b++) {
        const err = relError(step.subarray(b * V, (b + 1) * V), full.subarray((b * T + t) * V, (b * T + t + 1) * V));
        assert.ok(err <= 1e-5, `B ${B} position ${t} row ${b}: relative error ${err}`); // f32 activations
      }
    }
    // Theory: MLA R + Dr, xKV Dr, GQA 2·Hkv·D values per token per layer.
    const values = [7 + 4, 4, 2 * 2 * 6, 9 + 2, 6, 4];
    assert.equal(cache.bytesPerToken(), values.reduce((s, v) => s + 4 * v, 0));
    assert.equal(cache.bytesPerToken(), kvBytesPerToken(cfg, 4));
  }
  // Every cache dtype: bytes as the formula says, and decoding through it close to the full forward.
  const T = 9;
  const x = ids(T, 11);
  const full = noGrad(() => forward(m, x, 1, T).value.data);
  for (const dtype of CACHE_DTYPES) {
    const cache = new KVCache(m, 1, T, dtype);
    assert.equal(cache.bytesPerToken(), kvBytesPerTokenFor(cfg, dtype), dtype);
    const got = noGrad(() => forward(m, x, 1, T, { cache }).value.data);
    const err = relError(got, full);
    const tol = dtype === 'f32' ? 1e-5 : dtype === 'int8' ? 5e-2 : 2e-2; // 16-bit / int8 rows (as the MLA cache tests)
    assert.ok(err <= tol, `${dtype}: relative error ${err}`);
  }
  // A group's later layers keep Dr only: int8 stores their rope key whole in bf16 (no scale).
  assert.equal(kvBytesPerTokenFor(config([mlaLayer(7), xkvLayer(0, 7)]), 'int8'), 7 + 4 + 2 * 4 + 2 * 4);
});

test('xKV: the later layers read the first layer\'s latent (gradients reach its kv_a; finite differences)', () => {
  const cfg = config(LAYERS.slice(0, 2));
  const w = randomWeights(cfg, 8);
  const x = ids(7, 2);
  const targets = ids(7, 3);
  const name = 'model.layers.0.self_attn.kv_a_proj_with_mqa.weight';
  // Loss through layer 1's attention only: layer 0's o_proj is zero, so kv_a of layer 0 reaches the loss only
  // through the latent layer 1 reads (a detached share would give a zero gradient).
  w.set('model.layers.0.self_attn.o_proj.weight', Tensor.zeros(w.get('model.layers.0.self_attn.o_proj.weight')!.shape));
  const loss = (ww: Map<string, Tensor>): number => {
    const m = Model.fromWeights(cfg, ww, ref64);
    return noGrad(() => Array.from(m.F.crossEntropy(forward(m, x, 1, 7), targets).value.data).reduce((a, b) => a + b, 0));
  };
  const m = Model.fromWeights(cfg, w, ref64);
  backward(ref64, m.F.sum(m.F.crossEntropy(forward(m, x, 1, 7), targets)));
  const g = m.p(name).grad!.data;
  let norm = 0;
  for (const v of g) norm += v * v;
  assert.ok(Math.sqrt(norm) > 1e-3, `gradient norm ${Math.sqrt(norm)}`);
  const eps = 1e-5;
  for (const k of [0, 5, 31, 7 * C + 3]) { // latent rows only (the rope rows of layer 0 are not read by layer 1)
    const plus = new Map(w);
    const minus = new Map(w);
    const t = w.get(name)!;
    const tp = t.clone();
    const tm = t.clone();
    tp.data[k]! += eps;
    tm.data[k]! -= eps;
    plus.set(name, tp);
    minus.set(name, tm);
    const fd = (loss(plus) - loss(minus)) / (2 * eps);
    assert.ok(Math.abs(fd - g[k]!) <= 1e-5 * Math.max(1, Math.abs(fd)), `element ${k}: autograd ${g[k]} vs finite difference ${fd}`);
  }
});

test('xKV: the native layout round-trips (mla_upcycle.layers source / kv_rank), and inconsistent groups are refused', () => {
  const cfg = config();
  const w = randomWeights(cfg, 4);
  const { dir, cleanup } = tempDir();
  try {
    saveModelDir(`${dir}/m`, cfg, w);
    const json = JSON.parse(readFileSync(`${dir}/m/config.json`, 'utf8')) as { mla_upcycle: { layers: Record<string, unknown>[] } };
    assert.deepEqual(json.mla_upcycle.layers[4], {
      kind: 'xkv', source: 3, kv_rank: 9, rope_dim: 6, nope_dim: 6, v_dim: 5, q_rank: null, bias: false, rope_inv_freq: [1, 0.3, 0.05],
    });
    const back = loadDeepseekModel(`${dir}/m`);
    assert.deepEqual(back.config, { ...cfg, rmsNormEps: back.config.rmsNormEps });
    const x = ids(12, 9);
    const a = noGrad(() => forward(Model.fromWeights(cfg, w, be), x, 1, 12).value.data);
    const b = noGrad(() => forward(Model.fromWeights(back.config, back.weights, be), x, 1, 12).value.data);
    assert.ok(relError(b, a) <= 1e-6, 'logits after the round trip'); // f32 file of f64-built weights
    // A group broken in the file: layer 5 reads layer 3 across a GQA layer.
    json.mla_upcycle.layers[4] = { kind: 'gqa', num_kv_heads: 2, head_dim: 6, qkv_bias: false };
    writeFileSync(`${dir}/m/config.json`, JSON.stringify(json));
    assert.throws(() => loadDeepseekModel(`${dir}/m`), (e: unknown) => e instanceof UserError && /mla_upcycle\.layers.*layer 5: reads the latent of layer 3, but layer 4 between them is not of the same group/.test(e.message));
  } finally {
    cleanup();
  }
  const refused: [LayerAttention[], RegExp][] = [
    [[mlaLayer(7), xkvLayer(0, 8)], /layer 1: kv_rank 8 differs from the kv_rank 7 of layer 0/],
    [[{ kind: 'gqa', numKvHeads: 2, headDim: 6, qkvBias: false }, xkvLayer(0, 7)], /layer 1: reads the latent of layer 0, which is gqa attention, not MLA/],
    [[mlaLayer(7), xkvLayer(1, 7)], /layer 1: reads the latent of layer 1, but only an earlier layer can be read/],
  ];
  for (const [layers, why] of refused) {
    const c = config(layers);
    assert.throws(() => Model.fromWeights(c, randomWeights(c, 1), be), (e: unknown) => e instanceof UserError && why.test(e.message), String(why));
  }
});

test('xKV: mla info counts R + Dr for the first layer, Dr for the later ones; every export and the torch engine refuse it with why', () => {
  const cfg = config();
  const r = describe(cfg, 'm', 'ref');
  assert.equal(r.kv_bytes_per_token, 4 * (11 + 4 + 24 + 11 + 6 + 4));
  assert.deepEqual(r.layers[1], { layer: 1, kind: 'xkv', source: 0, kv_rank: 7, rope_dim: 4, nope_dim: 3, v_dim: 7, q_rank: 10, kv_values_per_token: 4 });
  const w = randomWeights(cfg, 2);
  const vocab = {
    model: 'llama' as const, tokens: Array.from({ length: 37 }, (_, i) => `t${i}`), scores: Array(37).fill(0), types: Array(37).fill(1),
    bos: 1, eos: 2, unk: 0, addBos: true, notes: [],
  };
  const why = /layer\(s\) 1, 4, 5 reads the latent of an earlier layer .*no stock engine shares a latent across layers: llama\.cpp's deepseek2 and DeepSeek-V3/;
  assert.throws(() => planGguf(cfg, w, { vocab, source: 'm' }), (e: unknown) => e instanceof UserError && /^m: cannot export to GGUF: /.test(e.message) && why.test(e.message));
  assert.throws(() => exportHf('/nonexistent/never-written', cfg, w, { source: 'm' }), (e: unknown) => e instanceof UserError && why.test(e.message));
  assert.throws(() => assertTorchKinds(cfg, 'student'), (e: unknown) => e instanceof UserError && /--engine torch: the student's layer\(s\) 1, 4, 5: xKV layers .* \(--engine cpu\)/.test(e.message));
  assertTorchKinds(config([mlaLayer(7)]), 'student'); // an MLA student runs
});

test('xKV conversion: groups of adjacent converted layers, kept layers break them', () => {
  assert.deepEqual(latentGroups([true, true, true, false, true, true, true, true, true], 2), [[0, 1], [2], [4, 5], [6, 7], [8]]);
  assert.deepEqual(latentGroups([false, true, true, true], 3), [[1, 2, 3]]);
});

test('xKV conversion: when the later layer reads a linear map of the first one\'s input, the full group rank reproduces the full-rank MLA conversion; half of it does not', () => {
  for (const bias of [false, true]) {
    const teacher = randomLlama(9, bias, refBackend, 1); // one kv head: 24 key + value dims per layer, 48 per group
    // Layer 0 adds nothing to the residual stream, so layer 1's attention input is x_1 = diag(g_1 / g_0)·x_0 (the
    // two input norms differ): a linear map of x_0 that only the cross moments Σ_10 Σ_00⁻¹ (not Σ_01) recover.
    for (const n of ['self_attn.o_proj', 'mlp.down_proj']) teacher.p(`model.layers.0.${n}.weight`).value.data.fill(0);
    const opts: ConvertOptions = {
      plan: { kind: 'rank', rank: 24 }, ropeDim: 4, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false, nopeInit: 'identity',
      keepLayers: [], calib: { samples: 4, length: 40, seed: 3 },
    };
    const plain = convert(teacher, null, opts); // rank 24 = every key and value dim: exact
    const x = ids(20, 4, 61);
    const logitsOf = (r: { config: ModelConfig; weights: Map<string, Tensor> }): Float32Array | Float64Array =>
      noGrad(() => forward(Model.fromWeights(r.config, r.weights, be), x, 1, 20).value.data);
    const want = logitsOf(plain);
    const shared = convertSharedLatent(teacher, null, opts, 2);
    assert.deepEqual(shared.config.layers.map((a) => a.kind), ['mla', 'xkv']);
    assert.equal(shared.studentKvBytesPerToken, plain.studentKvBytesPerToken); // 48 + 4 and 4 against 2 × (24 + 4)
    const err = relError(logitsOf(shared), want);
    // The floor is the f32 moments through Σ_00⁻¹ (and the ridge); the constant column of a bias (x' = [x; 1]) makes Σ'_00
    // worse conditioned. A transposed cross moment gives 1.3, half the rank 0.4.
    const tol = bias ? 2e-3 : 1e-4;
    assert.ok(err <= tol, `bias ${bias}: full group rank: relative logit error ${err}`);
    const half = convertSharedLatent(teacher, null, { ...opts, plan: { kind: 'rank', rank: 12 } }, 2);
    const errHalf = relError(logitsOf(half), want);
    assert.ok(errHalf > 1e-2, `bias ${bias}: half the rank still matches (${errHalf}): the test would not see a wrong factorisation`);
  }
});

test('CLI: convert --share-latent 2 at 2× (equal bytes to plain MLA), info counts it, export and bad flags refused with why', () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'x');
    const calib = ['--tokenizer', STORIES_TOK, '--calib-samples', '3', '--calib-len', '32'];
    const r = JSON.parse(mlaOk(['convert', STORIES_BIN, ...calib, '--out', out, '--kv-ratio', '2', '--rope-dim', '4', '--keep-layers', '2', '--share-latent', '2', '--json'])) as {
      layers: { kind: string; kvRank: number }[]; kv_bytes_per_token: number; compression: number;
    };
    // 5 layers of 64 values, layer 2 kept: 160 − 64 leave 24 a converted layer (rank 20 + rope 4); groups 0+1 and 3+4
    // share ranks of 40.
    assert.deepEqual(r.layers.map((l) => l.kind), ['mla', 'xkv', 'gqa', 'mla', 'xkv']);
    assert.deepEqual([r.layers[0]!.kvRank, r.layers[1]!.kvRank], [40, 40]);
    assert.equal(r.compression, 2);
    const info = JSON.parse(mlaOk(['info', out, '--json'])) as { kv_bytes_per_token: number; layers: { kind: string; kv_values_per_token: number }[] };
    assert.equal(info.kv_bytes_per_token, r.kv_bytes_per_token);
    assert.deepEqual(info.layers.map((l) => l.kv_values_per_token), [44, 4, 64, 44, 4]);
    const ex = mla(['export', out, '--format', 'gguf', '--out', join(dir, 'x.gguf')]);
    assert.notEqual(ex.status, 0);
    assert.match(ex.stderr, /layer\(s\) 1, 4 reads the latent of an earlier layer .*no stock engine shares a latent across layers/);
    const bad = mla(['convert', STORIES_BIN, '--out', join(dir, 'y'), '--share-latent', '1']);
    assert.match(bad.stderr, /--share-latent: expected an integer ≥ 2/);
    assert.equal(bad.status, 1);
  } finally {
    cleanup();
  }
});

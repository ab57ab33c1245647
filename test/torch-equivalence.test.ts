// The PyTorch engine (python/mla_torch) against the cpu engine, f32 on the CPU: the same logits (≤ 1e-5 relative)
// for every model kind, read through the same files the engine reads (llama2.c, HF llama with llama3 rope scaling,
// HF qwen2 with biases and a tied head, and MLA conversions of each: q_lora + q_a_layernorm, latent norm, per-layer
// ranks and rope frequencies, biases, hybrid layers, both rope pairings). Skips, saying why, without torch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { noGrad } from '../src/autograd/var.js';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { defaultInvFreq, llama3InvFreq, type ModelConfig } from '../src/model/config.js';
import { loadModel } from '../src/io/load.js';
import { saveHfModel } from '../src/io/hf.js';
import { saveModelDir } from '../src/io/deepseek.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { findTorchPython, torchEnv, torchModelSpec } from '../src/train/torch-engine.js';
import { STORIES_BIN, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

/** The Python with torch, or why the torch tests skip. */
export function torchOrSkip(): { python: string } | string {
  try {
    return findTorchPython();
  } catch (e) {
    return `torch engine tests skipped: ${(e as Error).message}`;
  }
}

const found = torchOrSkip();
const skip = typeof found === 'string' ? found : false;
if (skip) console.log(`# ${skip}`);

const be = getBackend(availableBackends().includes('cpu') ? 'cpu' : 'ref');

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'transmla', basis: 'weight', qRank: null, latentNorm: false, nopeInit: 'identity', keepLayers: [],
    calib: { samples: 2, length: 24, seed: 7 }, ...over,
  };
}

/** A random HF-style model variant: llama3 rope scaling (untied head) or qwen2 biases with a tied head. */
function hfVariant(kind: 'llama3' | 'qwen2-tied'): { config: ModelConfig; weights: Map<string, Tensor> } {
  const m = randomLlama(kind === 'llama3' ? 5 : 3, kind === 'qwen2-tied');
  let config = m.config;
  const weights = m.weights();
  if (kind === 'llama3') {
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    config = { ...config, ropeTheta: 500000, ropeScaling: scaling, ropeInvFreq: llama3InvFreq(defaultInvFreq(500000, 12), scaling) };
  } else {
    config = { ...config, tieEmbeddings: true };
    weights.delete('lm_head.weight');
  }
  return { config, weights };
}

/** Give the last layer an odd rank (R−3: latent rows and kv_b columns cut) and its own rope frequencies. */
function oddLastLayer(cfg: ModelConfig, w: Map<string, Tensor>): void {
  const i = cfg.numLayers - 1;
  const a = cfg.layers[i]!;
  if (a.kind !== 'mla') throw new Error('expected an MLA layer');
  const p = `model.layers.${i}.self_attn`;
  const R = a.kvRank;
  const r = R - 3;
  const kva = w.get(`${p}.kv_a_proj_with_mqa.weight`)!; // (R+Dr, C)
  const C = kva.dim(1);
  const rows = [...Array.from({ length: r }, (_, j) => j), ...Array.from({ length: a.ropeDim }, (_, j) => R + j)];
  const nkva = Tensor.zeros([r + a.ropeDim, C]);
  rows.forEach((src, dst) => nkva.data.set(kva.data.subarray(src * C, (src + 1) * C), dst * C));
  const kvb = w.get(`${p}.kv_b_proj.weight`)!; // (H·(Dn+Dv), R)
  const nkvb = Tensor.zeros([kvb.dim(0), r]);
  for (let o = 0; o < kvb.dim(0); o++) nkvb.data.set(kvb.data.subarray(o * R, o * R + r), o * r);
  w.set(`${p}.kv_a_proj_with_mqa.weight`, nkva);
  w.set(`${p}.kv_b_proj.weight`, nkvb);
  cfg.layers[i] = { ...a, kvRank: r, ropeInvFreq: a.ropeInvFreq.map((f) => f * 0.7) };
}

test('torch logits equal the cpu engine for teachers and every MLA student variant', { skip }, () => {
  const { dir, cleanup } = tempDir();
  try {
    const paths: [string, string][] = [['stories260K (llama2.c, adjacent rope, GQA)', STORIES_BIN]];
    for (const kind of ['llama3', 'qwen2-tied'] as const) {
      const { config, weights } = hfVariant(kind);
      const p = join(dir, kind);
      saveHfModel(p, config, weights, 'BF16');
      paths.push([`HF ${kind}`, p]);
    }
    const teacherOf = (p: string) => {
      const l = loadModel(p);
      return Model.fromWeights(l.config, l.weights, getBackend('ref'));
    };
    const students: [string, string, Partial<ConvertOptions>][] = [
      ['MLA of stories260K: q_lora, latent norm, hybrid (layer 0 kept)', STORIES_BIN, { plan: { kind: 'ratio', ratio: 2 }, ropeDim: 4, qRank: 24, latentNorm: true, keepLayers: [0] }],
      ['MLA of HF llama3: per-layer ranks and rope frequencies', join(dir, 'llama3'), { plan: { kind: 'rank', rank: 8 }, ropeDim: 4, ropeMethod: 'mha2mla', basis: 'activation' }],
      ['MLA of HF qwen2: biases, tied head', join(dir, 'qwen2-tied'), { plan: { kind: 'ratio', ratio: 2 }, ropeDim: 6 }],
    ];
    for (const [name, src, o] of students) {
      const r = convert(teacherOf(src), null, opts(o));
      if (name.includes('per-layer')) oddLastLayer(r.config, r.weights);
      const p = join(dir, `mla-${paths.length}`);
      saveModelDir(p, r.config, r.weights);
      paths.push([name, p]);
    }
    const mla = paths.slice(3).map(([, p]) => loadModel(p).config);
    assert.ok(mla[0]!.layers[0]!.kind === 'gqa' && mla[0]!.layers[1]!.kind === 'mla', 'hybrid student');
    const ranks = mla[1]!.layers.map((a) => (a.kind === 'mla' ? a.kvRank : 0));
    const freqs = mla[1]!.layers.map((a) => (a.kind === 'mla' ? a.ropeInvFreq.join() : ''));
    assert.ok(new Set(ranks).size > 1 && new Set(freqs).size > 1, `per-layer ranks ${ranks} and rope frequencies`);
    assert.ok(mla[2]!.layers.every((a) => a.kind === 'mla' && a.bias) && mla[2]!.tieEmbeddings, 'biases and tied head');

    const B = 2;
    const T = 13;
    const jobs = paths.map(([, p], i) => {
      const l = loadModel(p);
      const rng = mulberry32(100 + i);
      const ids = Array.from({ length: B * T }, () => Math.floor(rng() * l.config.vocabSize));
      return { model: torchModelSpec(p, l.config), ids, B, T, out: join(dir, `logits-${i}.f32`) };
    });
    writeFileSync(join(dir, 'jobs.json'), JSON.stringify(jobs));
    const py = found as { python: string };
    const r = spawnSync(py.python, ['-m', 'mla_torch', 'logits', join(dir, 'jobs.json')], { env: torchEnv(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    paths.forEach(([name, p], i) => {
      const l = loadModel(p);
      const m = Model.fromWeights(l.config, l.weights, be);
      const want = noGrad(() => forward(m, Int32Array.from(jobs[i]!.ids), B, T).value.data);
      const buf = readFileSync(jobs[i]!.out);
      const got = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      assert.equal(got.length, want.length, name);
      const err = relError(got, want);
      assert.ok(err <= 1e-5, `${name}: relative error ${err}`);
    });
  } finally {
    cleanup();
  }
});

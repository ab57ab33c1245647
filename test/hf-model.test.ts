// HF checkpoints end to end: Llama-style and Qwen2-style models (bf16 weights, untied head, GQA, head_dim ≠ C/H for
// one) saved with the safetensors writer load and give the logits of the same weights run by an independent,
// deliberately naive float64 implementation written here (half-split RoPE, HF conventions); perplexity agrees too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { noGrad } from '../src/autograd/var.js';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { saveHfModel, loadHfModel } from '../src/io/hf.js';
import { perplexity } from '../src/eval/perplexity.js';
import { tempDir } from './helpers.js';

type W = Map<string, Tensor>;

/** Naive HF Llama/Qwen2 forward for one sequence in float64: logits (T, V). */
function naiveForward(cfg: ModelConfig, w: W, ids: number[]): number[][] {
  const C = cfg.hiddenSize;
  const H = cfg.numHeads;
  const a = cfg.layers[0]!;
  if (a.kind !== 'gqa') throw new Error('gqa only');
  const { numKvHeads: Hkv, headDim: D } = a;
  const get = (n: string) => w.get(n)!.toHost(); // bf16 weights widen exactly
  const lin = (x: number[], n: string, bias?: string) => {
    const W = get(n);
    const out = W.length / x.length;
    const b = bias && w.has(bias) ? get(bias) : null;
    return Array.from({ length: out }, (_, o) => {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < x.length; i++) s += W[o * x.length + i]! * x[i]!;
      return s;
    });
  };
  const norm = (x: number[], n: string) => {
    const g = get(n);
    const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + cfg.rmsNormEps)) * g[i]!);
  };
  const rope = (v: number[], pos: number) => {
    const out = v.slice();
    for (let j = 0; j < D / 2; j++) {
      const th = pos * Math.pow(cfg.ropeTheta, (-2 * j) / D);
      out[j] = v[j]! * Math.cos(th) - v[j + D / 2]! * Math.sin(th);
      out[j + D / 2] = v[j]! * Math.sin(th) + v[j + D / 2]! * Math.cos(th);
    }
    return out;
  };
  let xs = ids.map((id) => Array.from(get('model.embed_tokens.weight').subarray(id * C, (id + 1) * C)));
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    const hs = xs.map((x) => norm(x, `${p}.input_layernorm.weight`));
    const qs = hs.map((h) => lin(h, `${p}.self_attn.q_proj.weight`, `${p}.self_attn.q_proj.bias`));
    const ks = hs.map((h) => lin(h, `${p}.self_attn.k_proj.weight`, `${p}.self_attn.k_proj.bias`));
    const vs = hs.map((h) => lin(h, `${p}.self_attn.v_proj.weight`, `${p}.self_attn.v_proj.bias`));
    xs = xs.map((x, t) => {
      const o: number[] = [];
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / Hkv));
        const q = rope(qs[t]!.slice(h * D, (h + 1) * D), t);
        const sc = Array.from({ length: t + 1 }, (_, s) => {
          const k = rope(ks[s]!.slice(g * D, (g + 1) * D), s);
          return q.reduce((acc, qi, i) => acc + qi * k[i]!, 0) / Math.sqrt(D);
        });
        const m = Math.max(...sc);
        const e = sc.map((v) => Math.exp(v - m));
        const z = e.reduce((s2, v) => s2 + v, 0);
        for (let i = 0; i < D; i++) o.push(e.reduce((acc, pe, s) => acc + (pe / z) * vs[s]![g * D + i]!, 0));
      }
      const attn = lin(o, `${p}.self_attn.o_proj.weight`);
      const x2 = x.map((v, i) => v + attn[i]!);
      const h2 = norm(x2, `${p}.post_attention_layernorm.weight`);
      const gt = lin(h2, `${p}.mlp.gate_proj.weight`);
      const up = lin(h2, `${p}.mlp.up_proj.weight`);
      const mid = gt.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
      const down = lin(mid, `${p}.mlp.down_proj.weight`);
      return x2.map((v, i) => v + down[i]!);
    });
  }
  return xs.map((x) => lin(norm(x, 'model.norm.weight'), cfg.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'));
}

function build(arch: 'llama' | 'qwen2', headDim: number, seed: number): { cfg: ModelConfig; w: W } {
  const rng = mulberry32(seed);
  const cfg: ModelConfig = {
    arch, vocabSize: 97, hiddenSize: 40, intermediateSize: 56, numLayers: 2, numHeads: 4, rmsNormEps: 1e-6,
    ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, headDim), ropeTheta: 10000, ropeScaling: null, maxPositions: 64,
    tieEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
    layers: [0, 1].map(() => ({ kind: 'gqa' as const, numKvHeads: 2, headDim, qkvBias: arch === 'qwen2' })),
  };
  const w: W = new Map();
  for (const s of modelTensors(cfg)) {
    const t = Tensor.zeros(s.shape);
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    for (let i = 0; i < t.size; i++) t.data[i] = isNorm ? 1 + 0.1 * gaussian(rng) : 0.25 * gaussian(rng);
    w.set(s.name, t);
  }
  return { cfg, w };
}

for (const [arch, headDim] of [['llama', 10], ['qwen2', 16]] as const) {
  test(`HF ${arch} checkpoint (bf16, untied, head_dim ${headDim}) gives the logits and perplexity of an independent implementation`, () => {
    const { cfg, w } = build(arch, headDim, headDim);
    const { dir, cleanup } = tempDir();
    try {
      saveHfModel(join(dir, 'm'), cfg, w, 'BF16');
      const loaded = loadHfModel(join(dir, 'm'));
      const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % cfg.vocabSize);
      const want = naiveForward(loaded.config, loaded.weights, ids);
      let nll = 0;
      for (let t = 0; t + 1 < ids.length; t++) {
        const row = want[t]!;
        const m = Math.max(...row);
        nll += m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) - row[ids[t + 1]!]!;
      }
      const wantPpl = Math.exp(nll / (ids.length - 1));
      for (const name of availableBackends()) {
        const model = Model.fromWeights(loaded.config, loaded.weights, getBackend(name));
        // The projections stay bf16 as read (half the memory); norms are f32.
        assert.equal(model.p('model.layers.0.self_attn.q_proj.weight').value.dtype, 'bf16');
        assert.equal(model.p('model.norm.weight').value.dtype, 'f32');
        const got = noGrad(() => forward(model, Int32Array.from(ids), 1, ids.length).value.data);
        const err = relError(got, want.flat());
        assert.ok(err <= 1e-5, `${name}: relative logit error ${err}`);
        const ppl = perplexity(model, ids, ids.length).perplexity;
        assert.ok(Math.abs(ppl - wantPpl) / wantPpl <= 1e-5, `${name}: perplexity ${ppl} vs ${wantPpl}`);
      }
    } finally {
      cleanup();
    }
  });
}

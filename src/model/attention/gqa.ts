// Original attention (GQA; MHA when Hkv = H), as in Llama / Qwen2 / Mistral: per-head keys and values, a K/V cache.
// Legend: B batch, T new positions, P cached positions, C hidden, H heads, Hkv kv heads, D head dim, Smax capacity.

import { Tensor } from '../../tensor/tensor.js';
import { Var } from '../../autograd/var.js';
import type { GqaAttention, ModelConfig } from '../config.js';
import { layerPrefix } from '../names.js';
import type { TensorSpec } from '../weights.js';
import type { AttentionKind } from './index.js';
import { writeCache } from './common.js';
import { QuantRows } from '../cache-dtype.js';

export interface GqaLayerCache {
  kind: 'gqa';
  k: Tensor; // (B, Smax, Hkv, D): the cache (f32), or the shared scratch quantised rows are read back into
  v: Tensor; // (B, Smax, Hkv, D)
  kq: QuantRows | null; // f16/bf16/int8 storage of K (int8: one scale per token per kv head)
  vq: QuantRows | null;
}

export const gqa: AttentionKind<GqaAttention, GqaLayerCache> = {
  kind: 'gqa',

  tensors(cfg: ModelConfig, i: number, a: GqaAttention): TensorSpec[] {
    const p = `${layerPrefix(i)}.self_attn`;
    const { numHeads: H, hiddenSize: C } = cfg;
    const { numKvHeads: Hkv, headDim: D } = a;
    const specs: TensorSpec[] = [
      { name: `${p}.q_proj.weight`, shape: [H * D, C] },
      { name: `${p}.k_proj.weight`, shape: [Hkv * D, C] },
      { name: `${p}.v_proj.weight`, shape: [Hkv * D, C] },
      { name: `${p}.o_proj.weight`, shape: [C, H * D] },
    ];
    if (a.qkvBias) {
      specs.push(
        { name: `${p}.q_proj.bias`, shape: [H * D] },
        { name: `${p}.k_proj.bias`, shape: [Hkv * D] },
        { name: `${p}.v_proj.bias`, shape: [Hkv * D] },
      );
    }
    return specs;
  },

  ropeRows(cfg, i, a) {
    const p = `${layerPrefix(i)}.self_attn`;
    const D = a.headDim;
    const heads = (n: number): number[] => Array.from({ length: n }, (_, h) => h * D);
    return [{ tensor: `${p}.q_proj`, starts: heads(cfg.numHeads), d: D }, { tensor: `${p}.k_proj`, starts: heads(a.numKvHeads), d: D }];
  },

  kvValuesPerToken: (a) => 2 * a.numKvHeads * a.headDim,

  ropeInvFreq: (cfg) => cfg.ropeInvFreq,

  toJson: (a) => ({ num_kv_heads: a.numKvHeads, head_dim: a.headDim, qkv_bias: a.qkvBias }),

  fromJson: (f) => ({ kind: 'gqa', numKvHeads: f.int('num_kv_heads'), headDim: f.int('head_dim'), qkvBias: f.bool('qkv_bias') }),

  describe: (a) => ({
    fields: { kv_heads: a.numKvHeads, head_dim: a.headDim, qkv_bias: a.qkvBias },
    shape: `${a.numKvHeads} kv heads × ${a.headDim}${a.qkvBias ? ', qkv bias' : ''}`,
  }),

  cacheRows: (a) => {
    const row = { width: a.numKvHeads * a.headDim, quantCols: a.numKvHeads * a.headDim, groups: a.numKvHeads };
    return [row, { ...row }];
  },

  createCache(model, _i, a, batch, capacity, opts) {
    const shape = [batch, capacity, a.numKvHeads, a.headDim];
    if (opts.dtype === 'f32') return { kind: 'gqa', k: Tensor.zeros(shape, model.be.dtype), v: Tensor.zeros(shape, model.be.dtype), kq: null, vq: null };
    const [rk, rv] = gqa.cacheRows(a);
    return {
      kind: 'gqa', k: opts.scratch('k', shape), v: opts.scratch('v', shape),
      kq: new QuantRows(opts.dtype, batch, capacity, rk!), vq: new QuantRows(opts.dtype, batch, capacity, rv!),
    };
  },

  cacheBytes: (c) => (c.kq && c.vq ? c.kq.bytes() + c.vq.bytes() : c.k.data.byteLength + c.v.data.byteLength),

  reads: () => [],

  check: () => null,

  forward(model, i, a, h, B, T, positions, cache, P) {
    const { F, config: cfg } = model;
    const H = cfg.numHeads;
    const { numKvHeads: Hkv, headDim: D } = a;
    const p = `${layerPrefix(i)}.self_attn`;
    const bias = (n: string): Var | null => (a.qkvBias ? model.p(`${p}.${n}.bias`) : null);
    const inv = model.invFreq[i]!;
    let q = F.reshape(F.linear(h, model.p(`${p}.q_proj.weight`), bias('q_proj')), [B, T, H, D]);
    let k = F.reshape(F.linear(h, model.p(`${p}.k_proj.weight`), bias('k_proj')), [B, T, Hkv, D]);
    const v = F.reshape(F.linear(h, model.p(`${p}.v_proj.weight`), bias('v_proj')), [B, T, Hkv, D]);
    q = F.rope(q, positions, inv, cfg.ropePairing);
    k = F.rope(k, positions, inv, cfg.ropePairing);
    const scale = 1 / Math.sqrt(D);
    let o: Var;
    if (cache) {
      if (cache.kq && cache.vq) {
        // Quantised storage: store the new rows, then read all P + T back (dequantised) for the attention kernel.
        cache.kq.write(k.value.data, B, T, P);
        cache.vq.write(v.value.data, B, T, P);
        cache.kq.read(cache.k.data, P + T);
        cache.vq.read(cache.v.data, P + T);
      } else {
        writeCache(model, cache.k, k.value, B, T, P);
        writeCache(model, cache.v, v.value, B, T, P);
      }
      const [out] = model.be.run('attention', [q.value, cache.k, cache.v], { scale, qOffset: P, kvLen: P + T, vDim: D });
      o = Var.const(out);
    } else {
      o = F.attention(q, k, v, scale);
    }
    return F.linear(F.reshape(o, [B * T, H * D]), model.p(`${p}.o_proj.weight`));
  },
};


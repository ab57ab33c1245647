// xKV cross-layer latent: groups of adjacent MLA layers share ONE latent cache. The group's first layer is a plain
// MLA layer (its kv_a makes c_t from its own input); every later layer of the group has no latent of its own and
// reads that layer's c_t (of the same positions, computed earlier in this pass or held in the first layer's decode
// cache) through its OWN kv_b_proj, with its own query and its own rope key (k_rope_proj, Dr values per token in its
// own cache). Causal and parallel in training: the latent comes from an earlier layer of the same pass (share.ts).
// Cache per token: the first layer R + Dr, each later layer Dr (xKV compresses the non-rope latent only).
// Legend: B batch, T new positions, P cached positions, C hidden, H heads, R kv rank (the group's), Dr rope dims,
// Dn nope dims, Dv value dims, Rq q rank, N = B·T rows, Smax capacity.

import { Tensor } from '../../tensor/tensor.js';
import type { Var } from '../../autograd/var.js';
import type { ModelConfig, XkvAttention } from '../config.js';
import { layerPrefix } from '../names.js';
import type { TensorSpec } from '../weights.js';
import type { AttentionKind } from './index.js';
import { writeCache } from './common.js';
import { QuantRows } from '../cache-dtype.js';
import { absorbedUp, attendAbsorbed, attendNaive, latentFields, latentQuery, queryRopeRows, queryTensors, ropeKey, SharedLatent } from './mla.js';

export interface XkvLayerCache {
  kind: 'xkv';
  rope: Tensor; // (B, Smax, 1, Dr): this layer's rope keys (f32), or the shared scratch quantised rows are read into
  stored: QuantRows | null; // f16/bf16 storage (int8 keeps the rope key in bf16, as MLA's rope part)
  wUKt: Tensor; // (H, R, Dn): this layer's W_UK per head, transposed, folded into the query
  wUVt: Tensor; // (H, R, Dv)
}

const isShared = (v: object): v is SharedLatent => v instanceof SharedLatent;

export const xkv: AttentionKind<XkvAttention, XkvLayerCache> = {
  kind: 'xkv',

  tensors(cfg: ModelConfig, i: number, a: XkvAttention): TensorSpec[] {
    const p = `${layerPrefix(i)}.self_attn`;
    const { numHeads: H, hiddenSize: C } = cfg;
    const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
    const specs = queryTensors(cfg, i, a);
    // The layer's own rope key; no latent rows (the group's first layer makes the latent).
    specs.push({ name: `${p}.k_rope_proj.weight`, shape: [Dr, C] });
    if (a.bias) specs.push({ name: `${p}.k_rope_proj.bias`, shape: [Dr] });
    specs.push(
      { name: `${p}.kv_b_proj.weight`, shape: [H * (Dn + Dv), R] },
      { name: `${p}.o_proj.weight`, shape: [C, H * Dv] },
    );
    return specs;
  },

  ropeRows(cfg, i, a) {
    return [...queryRopeRows(cfg, i, a), { tensor: `${layerPrefix(i)}.self_attn.k_rope_proj`, starts: [0], d: a.ropeDim }];
  },

  kvValuesPerToken: (a) => a.ropeDim,

  ropeInvFreq: (_cfg, a) => a.ropeInvFreq,

  toJson: (a) => ({
    source: a.source, kv_rank: a.kvRank, rope_dim: a.ropeDim, nope_dim: a.nopeDim, v_dim: a.vDim, q_rank: a.qRank, bias: a.bias,
    rope_inv_freq: a.ropeInvFreq,
  }),

  fromJson: (f) => ({ kind: 'xkv', source: f.int('source', 0), ...latentFields(f) }),

  describe: (a) => ({
    fields: { source: a.source, kv_rank: a.kvRank, rope_dim: a.ropeDim, nope_dim: a.nopeDim, v_dim: a.vDim, q_rank: a.qRank },
    shape: `latent of layer ${a.source} (r_kv ${a.kvRank}) + own d_r ${a.ropeDim}, d_n ${a.nopeDim}, d_v ${a.vDim}, q ${a.qRank === null ? 'full' : 'rank ' + a.qRank}`,
  }),

  cacheRows: (a) => [{ width: a.ropeDim, quantCols: 0, groups: 0 }],

  createCache(model, i, a, batch, capacity, opts) {
    const { wUKt, wUVt } = absorbedUp(model, i, a);
    const shape = [batch, capacity, 1, a.ropeDim];
    if (opts.dtype === 'f32') return { kind: 'xkv', rope: Tensor.zeros(shape, model.be.dtype), stored: null, wUKt, wUVt };
    const stored = new QuantRows(opts.dtype, batch, capacity, xkv.cacheRows(a)[0]!);
    return { kind: 'xkv', rope: opts.scratch('xkv-rope', shape), stored, wUKt, wUVt };
  },

  cacheBytes: (c) => (c.stored ? c.stored.bytes() : c.rope.data.byteLength),

  reads: (a) => [a.source],

  check(cfg, i, a) {
    const j = a.source;
    const src = cfg.layers[j];
    if (!Number.isInteger(j) || j < 0 || j >= i || !src) return `reads the latent of layer ${j}, but only an earlier layer can be read (0..${i - 1})`;
    if (src.kind !== 'mla') return `reads the latent of layer ${j}, which is ${src.kind} attention, not MLA`;
    if (src.kvRank !== a.kvRank) return `kv_rank ${a.kvRank} differs from the kv_rank ${src.kvRank} of layer ${j}, whose latent it reads`;
    // A group is adjacent: between the first layer and this one only layers of the same group (their decode reads
    // the first layer's rows while no other layer has reused its read-back buffer).
    for (let k = j + 1; k < i; k++) {
      const l = cfg.layers[k]!;
      if (l.kind !== 'xkv' || l.source !== j) return `reads the latent of layer ${j}, but layer ${k} between them is not of the same group (groups are adjacent layers)`;
    }
    return null;
  },

  forward(model, i, a, h, B, T, positions, cache, P, share) {
    const { F } = model;
    const p = `${layerPrefix(i)}.self_attn`;
    const q = latentQuery(model, i, a, h, B, T, positions);
    const kr = ropeKey(model, i, F.linear(h, model.p(`${p}.k_rope_proj.weight`), a.bias ? model.p(`${p}.k_rope_proj.bias`) : null), B, T, positions);
    const shared = share.get(i, a.source, isShared, 'an MLA latent');
    let o: Var; // (B, T, H, Dv)
    if (!cache) {
      if (!shared.c) throw new Error(`layer ${i}: layer ${a.source} published decode rows in a pass without a cache`);
      o = attendNaive(model, i, a, q, shared.c, kr, B, T);
    } else {
      if (!shared.rows) throw new Error(`layer ${i}: layer ${a.source} published no decode rows in a pass with a cache`);
      const { be } = model;
      if (cache.stored) {
        cache.stored.write(kr.value.data, B, T, P);
        cache.stored.read(cache.rope.data, P + T);
      } else {
        writeCache(model, cache.rope, kr.value, B, T, P);
      }
      // The rows attention reads: the group's latent beside this layer's own rope keys, [c | k_rope] (B, Smax, 1,
      // R+Dr). A working copy per step, not cache: the cache holds the latent once (the first layer's) and Dr here.
      const rows = be.run('concat', [be.run('narrow', [shared.rows], { start: 0, len: a.kvRank })[0], cache.rope], {})[0];
      o = attendAbsorbed(model, a, q, rows, cache.wUKt, cache.wUVt, B, T, P);
    }
    return F.linear(F.reshape(o, [B * T, model.config.numHeads * a.vDim]), model.p(`${p}.o_proj.weight`));
  },
};

// DeepSeek-V3 Multi-head Latent Attention: a rank-R latent c = W_DKV·h plus one rope key shared by the heads; keys
// and values come back per head through kv_b_proj (training / prefill), or decode attends over the latent rows
// directly with the up-projections absorbed into the query and the output (a latent-only cache).
// Legend: B batch, T new positions, P cached positions, C hidden, H heads, R kv rank, Dr rope dims, Dn nope dims,
// Dv value dims, Rq q rank, N = B·T rows, Smax capacity.

import { Tensor } from '../../tensor/tensor.js';
import { Var, noGrad } from '../../autograd/var.js';
import type { MlaAttention, ModelConfig } from '../config.js';
import { layerPrefix } from '../names.js';
import type { TensorSpec } from '../weights.js';
import type { AttentionKind, LayerFields, RopeRows } from './index.js';
import type { Model } from '../model.js';
import { writeCache } from './common.js';
import { QuantRows } from '../cache-dtype.js';

export interface MlaLayerCache {
  kind: 'mla';
  latent: Tensor; // (B, Smax, 1, R+Dr): the cache (f32), or the shared scratch quantised rows are read back into
  stored: QuantRows | null; // f16/bf16/int8 storage (int8: c_kv with one scale per token, k_rope in bf16)
  wUKt: Tensor; // (H, R, Dn): W_UK per head, transposed, folded into the query
  wUVt: Tensor; // (H, R, Dv): W_UV per head, transposed, applied after attention
}

export const mla: AttentionKind<MlaAttention, MlaLayerCache> = {
  kind: 'mla',

  tensors(cfg: ModelConfig, i: number, a: MlaAttention): TensorSpec[] {
    const p = `${layerPrefix(i)}.self_attn`;
    const { numHeads: H, hiddenSize: C } = cfg;
    const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
    const specs = queryTensors(cfg, i, a);
    specs.push({ name: `${p}.kv_a_proj_with_mqa.weight`, shape: [R + Dr, C] });
    if (a.bias) specs.push({ name: `${p}.kv_a_proj_with_mqa.bias`, shape: [R + Dr] });
    if (a.latentNorm) specs.push({ name: `${p}.kv_a_layernorm.weight`, shape: [R] });
    specs.push(
      { name: `${p}.kv_b_proj.weight`, shape: [H * (Dn + Dv), R] },
      { name: `${p}.o_proj.weight`, shape: [C, H * Dv] },
    );
    return specs;
  },

  ropeRows(cfg, i, a) {
    // kv_a is [latent R | shared rope key Dr].
    return [...queryRopeRows(cfg, i, a), { tensor: `${layerPrefix(i)}.self_attn.kv_a_proj_with_mqa`, starts: [a.kvRank], d: a.ropeDim }];
  },

  kvValuesPerToken: (a) => a.kvRank + a.ropeDim,

  ropeInvFreq: (_cfg, a) => a.ropeInvFreq,

  toJson: (a) => ({
    kv_rank: a.kvRank, rope_dim: a.ropeDim, nope_dim: a.nopeDim, v_dim: a.vDim, q_rank: a.qRank, latent_norm: a.latentNorm, bias: a.bias,
    rope_inv_freq: a.ropeInvFreq,
  }),

  fromJson: (f) => ({ kind: 'mla', ...latentFields(f), latentNorm: f.bool('latent_norm') }),

  describe: (a) => ({
    fields: { kv_rank: a.kvRank, rope_dim: a.ropeDim, nope_dim: a.nopeDim, v_dim: a.vDim, q_rank: a.qRank, latent_norm: a.latentNorm },
    shape: `r_kv ${a.kvRank} + d_r ${a.ropeDim}, d_n ${a.nopeDim}, d_v ${a.vDim}, q ${a.qRank === null ? 'full' : 'rank ' + a.qRank}${a.latentNorm ? ', latent norm' : ''}`,
  }),

  cacheRows: (a) => [{ width: a.kvRank + a.ropeDim, quantCols: a.kvRank, groups: 1 }],

  createCache(model, i, a, batch, capacity, opts) {
    const { wUKt, wUVt } = absorbedUp(model, i, a);
    const shape = [batch, capacity, 1, a.kvRank + a.ropeDim];
    if (opts.dtype === 'f32') return { kind: 'mla', latent: Tensor.zeros(shape, model.be.dtype), stored: null, wUKt, wUVt };
    const stored = new QuantRows(opts.dtype, batch, capacity, mla.cacheRows(a)[0]!);
    return { kind: 'mla', latent: opts.scratch('latent', shape), stored, wUKt, wUVt };
  },

  cacheBytes: (c) => (c.stored ? c.stored.bytes() : c.latent.data.byteLength),

  reads: () => [],

  check: () => null,

  forward(model, i, a, h, B, T, positions, cache, P, share) {
    const { F, config: cfg, be } = model;
    const { kvRank: R, ropeDim: Dr } = a;
    const p = `${layerPrefix(i)}.self_attn`;
    const bias = (n: string): Var | null => (a.bias ? model.p(`${p}.${n}.bias`) : null);
    const q = latentQuery(model, i, a, h, B, T, positions);

    // Latent and shared rope key: kv_a (N, R+Dr) = [c | k_rope].
    const kva = F.linear(h, model.p(`${p}.kv_a_proj_with_mqa.weight`), bias('kv_a_proj_with_mqa'));
    let c = F.narrow(kva, 0, R); // (N, R)
    if (a.latentNorm) c = F.rmsnorm(c, model.p(`${p}.kv_a_layernorm.weight`), cfg.rmsNormEps);
    const kr = ropeKey(model, i, F.narrow(kva, R, Dr), B, T, positions); // (B, T, 1, Dr)

    let o: Var; // (B, T, H, Dv)
    if (!cache) {
      share.put(i, new SharedLatent(c, null));
      o = attendNaive(model, i, a, q, c, kr, B, T);
    } else {
      const row = be.run('concat', [c.value.reshape([B, T, 1, R]), kr.value], {})[0]; // (B, T, 1, R+Dr)
      if (cache.stored) {
        // Quantised storage: store the new rows, then read all P + T back (dequantised) for the attention kernel.
        cache.stored.write(row.data, B, T, P);
        cache.stored.read(cache.latent.data, P + T);
      } else {
        writeCache(model, cache.latent, row, B, T, P);
      }
      share.put(i, new SharedLatent(null, cache.latent));
      o = attendAbsorbed(model, a, q, cache.latent, cache.wUKt, cache.wUVt, B, T, P);
    }
    return F.linear(F.reshape(o, [B * T, H(model) * a.vDim]), model.p(`${p}.o_proj.weight`));
  },
};

const H = (model: Model): number => model.config.numHeads;

/** What an MLA layer publishes for the xKV layers that read its latent (share.ts): the latent c (N, R) after the
 *  latent norm in a pass without cache (a Var: training backpropagates through it into kv_a), or the decode rows
 *  (B, Smax, 1, R+Dr) = [c | k_rope] of all P + T positions with a cache (the cache, or its read-back scratch). */
export class SharedLatent {
  constructor(
    readonly c: Var | null,
    readonly rows: Tensor | null,
  ) {}
}

/** The fields MLA and xKV layers share: a query, keys and values from a latent, a rope key. */
export type LatentGeometry = Pick<MlaAttention, 'kvRank' | 'ropeDim' | 'nopeDim' | 'vDim' | 'qRank' | 'bias'>;

/** The fields every latent layer (MLA, xKV) saves: ranks, dims, bias and the rope key's exact frequencies. */
export function latentFields(f: LayerFields): Omit<MlaAttention, 'kind' | 'latentNorm'> {
  const freqs = f.obj.rope_inv_freq;
  const ropeDim = f.int('rope_dim');
  if (!Array.isArray(freqs) || freqs.length !== ropeDim / 2 || freqs.some((x) => typeof x !== 'number' || !(x > 0))) {
    throw f.error('rope_inv_freq', `expected ${ropeDim / 2} positive numbers (rope_dim / 2)`);
  }
  const qRank = f.obj.q_rank === null || f.obj.q_rank === undefined ? null : f.int('q_rank');
  return {
    kvRank: f.int('kv_rank'), ropeDim, nopeDim: f.int('nope_dim', 0), vDim: f.int('v_dim'), qRank, bias: f.optBool('bias', false),
    ropeInvFreq: freqs as number[],
  };
}

/** The query's tensors of a latent layer (MLA, xKV): full q_proj, or q_a_proj / q_a_layernorm / q_b_proj. */
export function queryTensors(cfg: ModelConfig, i: number, a: LatentGeometry & { qRank: number | null; bias: boolean }): TensorSpec[] {
  const p = `${layerPrefix(i)}.self_attn`;
  const { numHeads: H, hiddenSize: C } = cfg;
  const { ropeDim: Dr, nopeDim: Dn, qRank } = a;
  if (qRank !== null) {
    return [
      { name: `${p}.q_a_proj.weight`, shape: [qRank, C] },
      { name: `${p}.q_a_layernorm.weight`, shape: [qRank] },
      { name: `${p}.q_b_proj.weight`, shape: [H * (Dn + Dr), qRank] },
    ];
  }
  const specs: TensorSpec[] = [{ name: `${p}.q_proj.weight`, shape: [H * (Dn + Dr), C] }];
  if (a.bias) specs.push({ name: `${p}.q_proj.bias`, shape: [H * (Dn + Dr)] });
  return specs;
}

/** The query rows that feed rope slices: each head is [nope Dn | rope Dr] (in q_proj or q_b_proj). */
export function queryRopeRows(cfg: ModelConfig, i: number, a: LatentGeometry): RopeRows[] {
  const p = `${layerPrefix(i)}.self_attn`;
  const q = Array.from({ length: cfg.numHeads }, (_, h) => h * (a.nopeDim + a.ropeDim) + a.nopeDim);
  return [
    { tensor: `${p}.q_proj`, starts: q, d: a.ropeDim },
    { tensor: `${p}.q_b_proj`, starts: q, d: a.ropeDim },
  ];
}

/** Query (B, T, H, Dn+Dr) from h (N, C): q_proj, or q_a → RMSNorm → q_b; rope on the last Dr columns of each head. */
export function latentQuery(model: Model, i: number, a: LatentGeometry, h: Var, B: number, T: number, positions: Int32Array): Var {
  const { F, config: cfg } = model;
  const p = `${layerPrefix(i)}.self_attn`;
  const qFlat =
    a.qRank === null
      ? F.linear(h, model.p(`${p}.q_proj.weight`), a.bias ? model.p(`${p}.q_proj.bias`) : null)
      : F.linear(
          F.rmsnorm(F.linear(h, model.p(`${p}.q_a_proj.weight`)), model.p(`${p}.q_a_layernorm.weight`), cfg.rmsNormEps),
          model.p(`${p}.q_b_proj.weight`),
        );
  return F.rope(F.reshape(qFlat, [B, T, cfg.numHeads, a.nopeDim + a.ropeDim]), positions, model.invFreq[i]!, cfg.ropePairing, a.nopeDim);
}

/** The shared rope key (B, T, 1, Dr) from its projected rows k (N, Dr), rotated at the positions. */
export function ropeKey(model: Model, i: number, k: Var, B: number, T: number, positions: Int32Array): Var {
  const Dr = k.shape[1]!;
  return model.F.rope(model.F.reshape(k, [B, T, 1, Dr]), positions, model.invFreq[i]!, model.config.ropePairing);
}

/** Naive attention (training, whole sequences) of layer i's kv_b over the latent c (N, R): per-head keys
 *  [k_nope | shared k_rope] and values; returns (B, T, H, Dv). */
export function attendNaive(model: Model, i: number, a: LatentGeometry, q: Var, c: Var, kr: Var, B: number, T: number): Var {
  const { F } = model;
  const { ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
  const heads = H(model);
  const kvb = F.reshape(F.linear(c, model.p(`${layerPrefix(i)}.self_attn.kv_b_proj.weight`)), [B, T, heads, Dn + Dv]);
  const k = F.concat(F.narrow(kvb, 0, Dn), F.expand(kr, [B, T, heads, Dr]));
  return F.attention(q, k, F.narrow(kvb, Dn, Dv), 1 / Math.sqrt(Dn + Dr));
}

/** Layer i's absorbed up-projections from kv_b (H·(Dn+Dv), R): W_UK per head transposed (H, R, Dn) and W_UV (H, R, Dv). */
export function absorbedUp(model: Model, i: number, a: LatentGeometry): { wUKt: Tensor; wUVt: Tensor } {
  const { be } = model;
  const { kvRank: R, nopeDim: Dn, vDim: Dv } = a;
  // kv_b (H·(Dn+Dv), R) → per head (H, Dn+Dv, R) → (H, R, Dn+Dv), then split the columns.
  const kvb = model.p(`${layerPrefix(i)}.self_attn.kv_b_proj.weight`).value.reshape([H(model), Dn + Dv, R]);
  return noGrad(() => {
    const t = be.run('permute', [kvb], { perm: [0, 2, 1] })[0];
    return { wUKt: be.run('narrow', [t], { start: 0, len: Dn })[0], wUVt: be.run('narrow', [t], { start: Dn, len: Dv })[0] };
  });
}

/**
 * Absorbed decode: q̃_h = W_UK,hᵀ q_nope,h lives in latent space; the T queries attend over rows (B, Smax, 1, R+Dr)
 * = [c | k_rope] (the first P + T valid) as MQA, and the latent output goes through W_UV. Returns (B, T, H, Dv).
 */
export function attendAbsorbed(
  model: Model, a: LatentGeometry, q: Var, rows: Tensor, wUKt: Tensor, wUVt: Tensor, B: number, T: number, P: number,
): Var {
  const { be } = model;
  const heads = H(model);
  const { kvRank: R, ropeDim: Dr, nopeDim: Dn } = a;
  const qn = be.run('permute', [be.run('narrow', [q.value], { start: 0, len: Dn })[0].reshape([B * T, heads, Dn])], {
    perm: [1, 0, 2],
  })[0]; // (H, N, Dn)
  const qLat = be.run('matmul', [qn, wUKt], { transA: false, transB: true })[0]; // (H, N, R)
  const qAbs = be.run('concat', [
    be.run('permute', [qLat], { perm: [1, 0, 2] })[0].reshape([B, T, heads, R]),
    be.run('narrow', [q.value], { start: Dn, len: Dr })[0],
  ], {})[0]; // (B, T, H, R+Dr)
  const [oLat] = be.run('attention', [qAbs, rows, rows], { scale: 1 / Math.sqrt(Dn + Dr), qOffset: P, kvLen: P + T, vDim: R });
  const oh = be.run('permute', [oLat.reshape([B * T, heads, R])], { perm: [1, 0, 2] })[0]; // (H, N, R)
  const ov = be.run('matmul', [oh, wUVt], { transA: false, transB: false })[0]; // (H, N, Dv)
  return Var.const(be.run('permute', [ov], { perm: [1, 0, 2] })[0]);
}

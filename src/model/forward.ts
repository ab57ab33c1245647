// The transformer forward pass for every model: training/prefill over whole sequences (naive attention, per-head keys
// and values) and cached decoding (GQA: K/V cache; MLA: absorbed attention over the latent cache).
// Legend: B batch, T new positions, P cached positions before them, C hidden, H heads, Hkv kv heads, D head dim,
// R kv rank, Dr rope dims, Dn nope dims, Dv value dims, V vocab, N = B·T rows.

import { Tensor } from '../tensor/tensor.js';
import { Var, isGradEnabled } from '../autograd/var.js';
import { tidy } from '../tensor/storage.js';
import type { GqaAttention, MlaAttention } from './config.js';
import type { Model } from './model.js';
import type { GqaLayerCache, KVCache, MlaLayerCache } from './cache.js';
import { layerPrefix } from './weights.js';

export interface ForwardOptions {
  /** Decode cache: new keys are appended at cache.length and attention reads the whole prefix. */
  cache?: KVCache;
  /** Collect each layer's input hidden state (N, C) (for calibration). */
  collectHidden?: Var[];
}

/** Logits (B·T, V) for token ids (B·T, row-major). With a cache, positions continue from cache.length. */
export function forward(model: Model, ids: Int32Array, B: number, T: number, opts: ForwardOptions = {}): Var {
  const { config: cfg, F } = model;
  if (ids.length !== B * T) throw new Error(`forward: ${ids.length} ids for batch ${B} × ${T}`);
  const cache = opts.cache;
  const P = cache ? cache.length : 0;
  if (cache && (cache.batch !== B || P + T > cache.capacity)) {
    throw new Error(`forward: cache of batch ${cache.batch} and capacity ${cache.capacity} cannot take ${B} × ${P + T}`);
  }
  for (let i = 0; i < ids.length; i++) {
    if (ids[i]! < 0 || ids[i]! >= cfg.vocabSize) throw new Error(`forward: token id ${ids[i]} outside the vocabulary of ${cfg.vocabSize}`);
  }
  const positions = new Int32Array(T);
  for (let t = 0; t < T; t++) positions[t] = P + t;

  let x = F.embedding(model.p('model.embed_tokens.weight'), ids); // (N, C)
  // Without a tape nothing but the layer's output outlives the layer: a tidy per layer frees its activations at
  // once (inference memory ≈ one layer's activations); with a tape they are kept for backward.
  const layerScope = isGradEnabled() ? (f: () => Var): Var => f() : tidy;
  cfg.layers.forEach((attn, i) => {
    opts.collectHidden?.push(x);
    const xin = x;
    x = layerScope(() => {
      const pre = layerPrefix(i);
      const h = F.rmsnorm(xin, model.p(`${pre}.input_layernorm.weight`), cfg.rmsNormEps);
      const layerCache = cache?.layers[i];
      const a =
        attn.kind === 'gqa'
          ? gqaAttention(model, i, attn, h, B, T, positions, layerCache as GqaLayerCache | undefined, P)
          : mlaAttention(model, i, attn, h, B, T, positions, layerCache as MlaLayerCache | undefined, P);
      const x1 = F.add(xin, a);
      const h2 = F.rmsnorm(x1, model.p(`${pre}.post_attention_layernorm.weight`), cfg.rmsNormEps);
      const g = F.linear(h2, model.p(`${pre}.mlp.gate_proj.weight`));
      const u = F.linear(h2, model.p(`${pre}.mlp.up_proj.weight`));
      return F.add(x1, F.linear(F.swiglu(g, u), model.p(`${pre}.mlp.down_proj.weight`)));
    });
  });
  if (cache) cache.length = P + T;
  const xf = F.rmsnorm(x, model.p('model.norm.weight'), cfg.rmsNormEps);
  return F.linear(xf, model.lmHead());
}

/** Append rows (B, T, …) to a cache buffer (B, Smax, …) at position P: one strided write for all batch rows. */
function writeCache(model: Model, buf: Tensor, rows: Tensor, B: number, T: number, P: number): void {
  const per = rows.size / (B * T);
  model.be.run('writeAt', [buf, rows], { offset: P * per, blocks: B, stride: buf.dim(1) * per });
}

function gqaAttention(
  model: Model, i: number, a: GqaAttention, h: Var, B: number, T: number, positions: Int32Array,
  cache: GqaLayerCache | undefined, P: number,
): Var {
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
    writeCache(model, cache.k, k.value, B, T, P);
    writeCache(model, cache.v, v.value, B, T, P);
    const [out] = model.be.run('attention', [q.value, cache.k, cache.v], { scale, qOffset: P, kvLen: P + T, vDim: D });
    o = Var.const(out);
  } else {
    o = F.attention(q, k, v, scale);
  }
  return F.linear(F.reshape(o, [B * T, H * D]), model.p(`${p}.o_proj.weight`));
}

function mlaAttention(
  model: Model, i: number, a: MlaAttention, h: Var, B: number, T: number, positions: Int32Array,
  cache: MlaLayerCache | undefined, P: number,
): Var {
  const { F, config: cfg, be } = model;
  const H = cfg.numHeads;
  const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
  const p = `${layerPrefix(i)}.self_attn`;
  const inv = model.invFreq[i]!;
  const pairing = cfg.ropePairing;
  const scale = 1 / Math.sqrt(Dn + Dr);

  // Query (B, T, H, Dn+Dr); rope on the last Dr columns of each head.
  const bias = (n: string): Var | null => (a.bias ? model.p(`${p}.${n}.bias`) : null);
  const qFlat =
    a.qRank === null
      ? F.linear(h, model.p(`${p}.q_proj.weight`), bias('q_proj'))
      : F.linear(
          F.rmsnorm(F.linear(h, model.p(`${p}.q_a_proj.weight`)), model.p(`${p}.q_a_layernorm.weight`), cfg.rmsNormEps),
          model.p(`${p}.q_b_proj.weight`),
        );
  const q = F.rope(F.reshape(qFlat, [B, T, H, Dn + Dr]), positions, inv, pairing, Dn);

  // Latent and shared rope key: kv_a (N, R+Dr) = [c | k_rope].
  const kva = F.linear(h, model.p(`${p}.kv_a_proj_with_mqa.weight`), bias('kv_a_proj_with_mqa'));
  let c = F.narrow(kva, 0, R); // (N, R)
  if (a.latentNorm) c = F.rmsnorm(c, model.p(`${p}.kv_a_layernorm.weight`), cfg.rmsNormEps);
  const kr = F.rope(F.reshape(F.narrow(kva, R, Dr), [B, T, 1, Dr]), positions, inv, pairing); // (B, T, 1, Dr)

  let o: Var; // (B, T, H, Dv)
  if (!cache) {
    // Naive path (training, whole sequences): per-head keys [k_nope | shared k_rope] and values.
    const kvb = F.reshape(F.linear(c, model.p(`${p}.kv_b_proj.weight`)), [B, T, H, Dn + Dv]);
    const k = F.concat(F.narrow(kvb, 0, Dn), F.expand(kr, [B, T, H, Dr]));
    const v = F.narrow(kvb, Dn, Dv);
    o = F.attention(q, k, v, scale);
  } else {
    // Absorbed decode: q̃_h = W_UK,hᵀ q_nope,h lives in latent space; attend over [c | k_rope] rows as MQA.
    const row = be.run('concat', [c.value.reshape([B, T, 1, R]), kr.value], {})[0]; // (B, T, 1, R+Dr)
    writeCache(model, cache.latent, row, B, T, P);
    const qn = be.run('permute', [be.run('narrow', [q.value], { start: 0, len: Dn })[0].reshape([B * T, H, Dn])], {
      perm: [1, 0, 2],
    })[0]; // (H, N, Dn)
    const qLat = be.run('matmul', [qn, cache.wUKt], { transA: false, transB: true })[0]; // (H, N, R)
    const qAbs = be.run('concat', [
      be.run('permute', [qLat], { perm: [1, 0, 2] })[0].reshape([B, T, H, R]),
      be.run('narrow', [q.value], { start: Dn, len: Dr })[0],
    ], {})[0]; // (B, T, H, R+Dr)
    const [oLat] = be.run('attention', [qAbs, cache.latent, cache.latent], { scale, qOffset: P, kvLen: P + T, vDim: R });
    const oh = be.run('permute', [oLat.reshape([B * T, H, R])], { perm: [1, 0, 2] })[0]; // (H, N, R)
    const ov = be.run('matmul', [oh, cache.wUVt], { transA: false, transB: false })[0]; // (H, N, Dv)
    o = Var.const(be.run('permute', [ov], { perm: [1, 0, 2] })[0]);
  }
  return F.linear(F.reshape(o, [B * T, H * Dv]), model.p(`${p}.o_proj.weight`));
}

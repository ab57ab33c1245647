// The transformer forward pass for every model: training/prefill over whole sequences and cached decoding. Each
// layer's attention block comes from its kind's module (model/attention/: GQA with a K/V cache, MLA with absorbed
// attention over the latent cache).
// Legend: B batch, T new positions, P cached positions before them, C hidden, H heads, Hkv kv heads, D head dim,
// R kv rank, Dr rope dims, Dn nope dims, Dv value dims, V vocab, N = B·T rows.

import { isGradEnabled, type Var } from '../autograd/var.js';
import { tidy } from '../tensor/storage.js';
import type { Model } from './model.js';
import { KVCache } from './cache.js';
import type { CacheDtype } from './cache-dtype.js';
import { layerPrefix } from './names.js';
import { attentionKind } from './attention/index.js';
import { LayerShare } from './attention/share.js';

export interface ForwardOptions {
  /** Decode cache: new keys are appended at cache.length and attention reads the whole prefix. */
  cache?: KVCache;
  /** Without `cache`: score through a fresh decode cache of this dtype (rows written to it, then read back for
   *  attention, MLA absorbed), which equals decoding token by token (each stored row depends on its token only). */
  cacheDtype?: CacheDtype;
  /** Called with each layer's attention input RMSNorm(h) (N, C) and the position of its first row (calibration
   *  statistics). It runs inside the layer's scope: what it keeps must be copied out (its tensors are freed). */
  onAttentionInput?: (layer: number, x: Var, positionOffset: number) => void;
  /** Stop after the last layer: return its output hidden state (N, C) instead of the logits (no final norm, no
   *  lm_head: calibration needs neither). */
  hiddenOnly?: boolean;
}

/** Logits (B·T, V) for token ids (B·T, row-major), or the last layer's hidden state (N, C) with hiddenOnly. With a
 *  cache, positions continue from cache.length. */
export function forward(model: Model, ids: Int32Array, B: number, T: number, opts: ForwardOptions = {}): Var {
  const { config: cfg, F } = model;
  if (ids.length !== B * T) throw new Error(`forward: ${ids.length} ids for batch ${B} × ${T}`);
  const cache = opts.cache ?? (opts.cacheDtype ? new KVCache(model, B, T, opts.cacheDtype) : undefined);
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
  // What a layer publishes for later layers (xKV latents, attention/share.ts) is returned with its output, so the
  // tidy keeps it alive as it does the output.
  const layerScope = isGradEnabled() ? <R>(f: () => R): R => f() : tidy;
  const share = new LayerShare(cfg);
  cfg.layers.forEach((attn, i) => {
    const xin = x;
    x = layerScope(() => {
      const pre = layerPrefix(i);
      const h = F.rmsnorm(xin, model.p(`${pre}.input_layernorm.weight`), cfg.rmsNormEps);
      opts.onAttentionInput?.(i, h, P);
      const layerCache = cache?.layers[i];
      const a = attentionKind(attn).forward(model, i, attn, h, B, T, positions, layerCache, P, share);
      const x1 = F.add(xin, a);
      const h2 = F.rmsnorm(x1, model.p(`${pre}.post_attention_layernorm.weight`), cfg.rmsNormEps);
      const g = F.linear(h2, model.p(`${pre}.mlp.gate_proj.weight`));
      const u = F.linear(h2, model.p(`${pre}.mlp.up_proj.weight`));
      return { out: F.add(x1, F.linear(F.swiglu(g, u), model.p(`${pre}.mlp.down_proj.weight`))), published: share.published(i) };
    }).out;
  });
  if (cache) cache.length = P + T;
  if (opts.hiddenOnly) return x;
  const xf = F.rmsnorm(x, model.p('model.norm.weight'), cfg.rmsNormEps);
  return F.linear(xf, model.lmHead());
}

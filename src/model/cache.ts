// Decode caches. GQA layers keep K and V (2·Hkv·D values per token); MLA layers keep only the latent row
// [c_kv (R) | k_rope (Dr)] per token, plus the absorbed up-projections derived from the weights (not counted as cache).
// Legend: B batch, Smax capacity, Hkv kv heads, D head dim, R kv rank, Dr rope dims, H heads, Dn/Dv nope/value dims.

import { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../autograd/var.js';
import type { Model } from './model.js';
import { layerPrefix } from './weights.js';

export interface GqaLayerCache {
  kind: 'gqa';
  k: Tensor; // (B, Smax, Hkv, D)
  v: Tensor; // (B, Smax, Hkv, D)
}

export interface MlaLayerCache {
  kind: 'mla';
  latent: Tensor; // (B, Smax, 1, R+Dr)
  wUKt: Tensor; // (H, R, Dn): W_UK per head, transposed, folded into the query
  wUVt: Tensor; // (H, R, Dv): W_UV per head, transposed, applied after attention
}

export type LayerCache = GqaLayerCache | MlaLayerCache;

export class KVCache {
  /** Tokens written so far (the same for every batch row). */
  length = 0;
  readonly layers: LayerCache[];

  constructor(
    model: Model,
    readonly batch: number,
    readonly capacity: number,
  ) {
    const { config, be } = model;
    const H = config.numHeads;
    this.layers = config.layers.map((a, i): LayerCache => {
      if (a.kind === 'gqa') {
        const shape = [batch, capacity, a.numKvHeads, a.headDim];
        return { kind: 'gqa', k: Tensor.zeros(shape, be.dtype), v: Tensor.zeros(shape, be.dtype) };
      }
      const { kvRank: R, nopeDim: Dn, vDim: Dv } = a;
      // kv_b (H·(Dn+Dv), R) → per head (H, Dn+Dv, R) → (H, R, Dn+Dv), then split the columns.
      const kvb = model.p(`${layerPrefix(i)}.self_attn.kv_b_proj.weight`).value.reshape([H, Dn + Dv, R]);
      const [wUKt, wUVt] = noGrad(() => {
        const t = be.run('permute', [kvb], { perm: [0, 2, 1] })[0];
        return [be.run('narrow', [t], { start: 0, len: Dn })[0], be.run('narrow', [t], { start: Dn, len: Dv })[0]];
      });
      return {
        kind: 'mla',
        latent: Tensor.zeros([batch, capacity, 1, a.kvRank + a.ropeDim], be.dtype),
        wUKt: wUKt,
        wUVt: wUVt,
      };
    });
  }

  /** Bytes held by the cache buffers (K/V or latent rows), for the whole capacity. */
  bytes(): number {
    let n = 0;
    for (const l of this.layers) {
      n += l.kind === 'gqa' ? l.k.data.byteLength + l.v.data.byteLength : l.latent.data.byteLength;
    }
    return n;
  }

  /** Bytes per cached token over all layers (per batch row). */
  bytesPerToken(): number {
    return this.bytes() / (this.capacity * this.batch);
  }
}

// Decode caches. GQA layers keep K and V (2·Hkv·D values per token); MLA layers keep only the latent row
// [c_kv (R) | k_rope (Dr)] per token, plus the absorbed up-projections derived from the weights (not counted as cache).
// Legend: B batch, Smax capacity, Hkv kv heads, D head dim, R kv rank, Dr rope dims, H heads, Dn/Dv nope/value dims.

import type { Model } from './model.js';
import { attentionKind, type LayerCache } from './attention/index.js';

export type { GqaLayerCache, LayerCache, MlaLayerCache } from './attention/index.js';

export class KVCache {
  /** Tokens written so far (the same for every batch row). */
  length = 0;
  readonly layers: LayerCache[];

  constructor(
    private readonly model: Model,
    readonly batch: number,
    readonly capacity: number,
  ) {
    this.layers = model.config.layers.map((a, i) => attentionKind(a).createCache(model, i, a, batch, capacity));
  }

  /** Bytes held by the cache buffers (K/V or latent rows), for the whole capacity. */
  bytes(): number {
    let n = 0;
    this.layers.forEach((c, i) => {
      const a = this.model.config.layers[i]!;
      n += attentionKind(a).cacheBytes(c);
    });
    return n;
  }

  /** Bytes per cached token over all layers (per batch row). */
  bytesPerToken(): number {
    return this.bytes() / (this.capacity * this.batch);
  }
}

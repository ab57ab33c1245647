// Decode caches. GQA layers keep K and V (2·Hkv·D values per token); MLA layers keep only the latent row
// [c_kv (R) | k_rope (Dr)] per token, plus the absorbed up-projections derived from the weights (not counted as cache).
// Legend: B batch, Smax capacity, Hkv kv heads, D head dim, R kv rank, Dr rope dims, H heads, Dn/Dv nope/value dims.

import type { Model } from './model.js';
import { Tensor } from '../tensor/tensor.js';
import { attentionKind, type LayerCache } from './attention/index.js';
import { rowBytes, type CacheDtype } from './cache-dtype.js';
import type { ModelConfig } from './config.js';

export type { GqaLayerCache, LayerCache, MlaLayerCache } from './attention/index.js';

export class KVCache {
  /** Tokens written so far (the same for every batch row). */
  length = 0;
  readonly layers: LayerCache[];
  /** Full-precision buffers quantised rows are read back into, shared by every layer of one shape (by tag). */
  private readonly scratch = new Map<string, Tensor>();

  /** dtype: how rows are stored (f32: the backend's own buffers; f16/bf16/int8: cache-dtype.ts QuantRows). */
  constructor(
    private readonly model: Model,
    readonly batch: number,
    readonly capacity: number,
    readonly dtype: CacheDtype = 'f32',
  ) {
    const scratch = (tag: string, shape: number[]): Tensor => {
      const key = `${tag}:${shape.join('x')}`;
      let t = this.scratch.get(key);
      if (!t) this.scratch.set(key, (t = Tensor.zeros(shape, model.be.dtype)));
      return t;
    };
    this.layers = model.config.layers.map((a, i) => attentionKind(a).createCache(model, i, a, batch, capacity, { dtype, scratch }));
  }

  /** Bytes of the shared read-back buffers (working memory of a quantised cache, not counted in bytes()). */
  scratchBytes(): number {
    let n = 0;
    for (const t of this.scratch.values()) n += t.data.byteLength;
    return n;
  }

  /** Bytes held by the cache buffers (K/V or latent rows, int8 scales), for the whole capacity. */
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

/** Cache bytes per token over all layers when rows are stored in `dtype` (f32 4 bytes a value; int8 with its scales
 *  and 16-bit tail): the formula KVCache.bytesPerToken is tested against. */
export function kvBytesPerTokenFor(cfg: ModelConfig, dtype: CacheDtype): number {
  let n = 0;
  for (const a of cfg.layers) for (const r of attentionKind(a).cacheRows(a)) n += rowBytes(dtype, r);
  return n;
}

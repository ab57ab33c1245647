// One module per attention kind behind one interface: a layer's config declares its kind, and everything the model
// layer does that depends on the kind (its tensors, rope rows, cache size, rope frequencies, description, decode
// cache, forward) is looked up here. A new kind (an SSM layer, say) is a new module plus one entry in
// ATTENTION_KINDS; the mapped type makes a kind without a module a compile error. Layers may share state within one
// forward pass: a kind names the earlier layers it reads (reads), the writer publishes into the pass's LayerShare
// (share.ts) only what some later layer reads, and the reader takes it (xkv.ts reads its group's MLA latent). The jobs keep their per-kind parts
// the same way, keyed by AttentionKindName: export/kinds/ (GGUF architecture, norm-eps rescale), convert/kinds.ts
// (what a layer is as a conversion source), train/distill.ts TRAINS_ATTENTION; test/kinds.test.ts keeps kind tests
// (`a.kind === 'mla'`) out of the rest of the tree.
// Legend: B batch, T new positions, P cached positions, N = B·T rows, C hidden.

import type { Var } from '../../autograd/var.js';
import type { LayerAttention, ModelConfig } from '../config.js';
import type { Model } from '../model.js';
import type { TensorSpec } from '../weights.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { CacheDtype, RowLayout } from '../cache-dtype.js';
import { gqa, type GqaLayerCache } from './gqa.js';
import { mla, type MlaLayerCache } from './mla.js';
import { xkv, type XkvLayerCache } from './xkv.js';
import type { LayerShare } from './share.js';

export type { GqaLayerCache, MlaLayerCache, XkvLayerCache };
export type LayerCache = GqaLayerCache | MlaLayerCache | XkvLayerCache;
export type AttentionKindName = LayerAttention['kind'];
/** The config type of one kind: AttentionOf<'mla'> is MlaAttention. */
export type AttentionOf<K extends AttentionKindName> = Extract<LayerAttention, { kind: K }>;

/** Rows of one projection that feed rope slices: in `${tensor}.weight` (out, in) and `${tensor}.bias` (out) when
 *  present, rows starts[k] … starts[k]+d−1 are the d rotated dims of one slice, paired as the config's ropePairing
 *  says. Changing the pairing permutes exactly these rows (export/stock.ts toAdjacentPairing). */
export interface RopeRows {
  tensor: string;
  starts: number[];
  d: number;
}

/** A validating reader of one layer's JSON object (io/json.ts Fields is one): errors name the file and field. */
export interface LayerFields {
  readonly obj: Readonly<Record<string, unknown>>;
  int(key: string, min?: number): number;
  bool(key: string): boolean;
  optBool(key: string, fallback: boolean): boolean;
  error(key: string, expected: string): Error;
}

/** How a decode cache is stored: its dtype, and a shared f32/f64 scratch buffer (by tag and shape) that quantised
 *  rows are read back into for attention (one per shape for all layers, so the full-precision copy is one layer's). */
export interface CacheOptions {
  dtype: CacheDtype;
  scratch(tag: string, shape: number[]): Tensor;
}

/** Everything the model layer needs to know about one attention kind. */
export interface AttentionKind<A extends LayerAttention, C extends LayerCache> {
  kind: A['kind'];
  /** The attention tensors of layer i (HF / DeepSeek-V3 names and shapes), in a stable order. */
  tensors(cfg: ModelConfig, i: number, a: A): TensorSpec[];
  /** The rows of the layer's projections that feed rope slices (q and k rows; a bias tensor may be absent). */
  ropeRows(cfg: ModelConfig, i: number, a: A): RopeRows[];
  /** Values the decode cache holds per token for this layer (the theory KVCache.bytes is tested against). */
  kvValuesPerToken(a: A): number;
  /** Inverse frequencies of the rope pairs this layer rotates. */
  ropeInvFreq(cfg: ModelConfig, a: A): number[];
  /** The layer's fields in a saved config (our extra key, mla_upcycle.layers[i], after "kind"), and back. */
  toJson(a: A): Record<string, unknown>;
  fromJson(f: LayerFields): A;
  /** Shape facts for `mla info`: JSON fields and a one-line summary. */
  describe(a: A): { fields: Record<string, unknown>; shape: string };
  /** The rows the decode cache keeps per token (GQA: K and V; MLA: one latent row), and how each quantises. */
  cacheRows(a: A): RowLayout[];
  /** The decode cache of layer i for `batch` rows of up to `capacity` positions. */
  createCache(model: Model, i: number, a: A, batch: number, capacity: number, opts: CacheOptions): C;
  /** Bytes the cache buffers hold (the cached rows and int8 scales; derived matrices and scratch are not cache). */
  cacheBytes(c: C): number;
  /** Earlier layers whose published state this layer's forward reads (share.ts; xKV: its group's first layer). */
  reads(a: A): number[];
  /** Why layer i does not fit the rest of the model (cross-layer constraints a single layer's fields cannot say),
   *  or null when it does. Checked when a Model is built and when a config is read. */
  check(cfg: ModelConfig, i: number, a: A): string | null;
  /** The attention block: h (N, C) normed input → (N, C) output. With a cache, the T new positions follow P cached
   *  ones, are appended to the cache and attend over all P + T (decode); without, the T positions attend causally.
   *  `share` carries state between the layers of this one pass: a layer publishes what later layers read. */
  forward(
    model: Model, i: number, a: A, h: Var, B: number, T: number, positions: Int32Array, cache: C | undefined, P: number, share: LayerShare,
  ): Var;
}

type KindTable = { [K in AttentionKindName]: AttentionKind<Extract<LayerAttention, { kind: K }>, Extract<LayerCache, { kind: K }>> };

export const ATTENTION_KINDS: KindTable = { gqa, mla, xkv };

/** Whether a string names an attention kind (for parsing configs). */
export function isAttentionKind(s: string): s is AttentionKindName {
  return Object.hasOwn(ATTENTION_KINDS, s);
}

/** The module of a layer's attention kind. (TypeScript cannot correlate a union value with the table's entry, hence
 *  the one cast: the table's mapped type guarantees the entry matches the kind.) */
export function attentionKind(a: LayerAttention): AttentionKind<LayerAttention, LayerCache> {
  return ATTENTION_KINDS[a.kind] as unknown as AttentionKind<LayerAttention, LayerCache>;
}

/** Every cross-layer problem of a config (AttentionKind.check), as "layer i: why" lines. */
export function configProblems(cfg: ModelConfig): string[] {
  return cfg.layers.flatMap((a, i) => {
    const why = attentionKind(a).check(cfg, i, a);
    return why === null ? [] : [`layer ${i}: ${why}`];
  });
}

// The export job's part of each attention kind, behind one interface keyed by kind (as model/attention/ is for the
// model layer): the llama.cpp architecture that runs a model of the kind, and the kind's rows in the norm-eps
// rescale. A new kind is a new module here plus one entry in EXPORT_KINDS; the mapped type makes a missing one a
// compile error. What stock engines can express of MLA models lives beside it (mla-stock.ts, mla-rope-fit.ts).
// Legend: C hidden, R kv rank, Rq q rank.

import type { Tensor } from '../../tensor/tensor.js';
import type { LayerAttention, ModelConfig } from '../../model/config.js';
import type { AttentionKindName, AttentionOf } from '../../model/attention/index.js';
import type { GgufDtype, GgufPlan } from '../gguf-tensors.js';
import { gqa } from './gqa.js';
import { mla } from './mla.js';
import { xkv } from './xkv.js';
import { UserError } from '../../errors.js';

/** What a kind's GGUF plan is given (the vocabulary is added by the caller). */
export interface GgufKindOptions {
  dtype: GgufDtype;
  /** Pad per-layer kv ranks to the largest (exact). */
  padRanks: boolean;
  /** general.name. */
  name: string;
  /** Names the model in messages. */
  source: string;
  /** Largest relative logit error a rope fit may cost (mla-rope-fit.ts). */
  ropeTolerance?: number;
}

/** A tensor the norm-eps rescale multiplies by α: all of it, or its first `rows` rows. */
export interface ScaledRows {
  name: string;
  rows?: number;
}

/** Everything the export job needs to know about one attention kind. */
export interface ExportKind<A extends LayerAttention> {
  /** Why no stock engine runs a layer of this kind (every export refuses a model with one), or null. */
  refused: string | null;
  /** The GGUF plan (metadata and tensors, no vocabulary yet) of a model whose every layer is of this kind, in the
   *  llama.cpp architecture that runs it; a UserError with every reason when the model is outside that layout. */
  gguf(cfg: ModelConfig, weights: Map<string, Tensor>, opts: GgufKindOptions): GgufPlan;
  /** The attention tensors of layer i that norm-eps.ts rescaleNormEps scales by α = sqrt(eps'/eps): what adds into
   *  the residual stream (all rows), and rows that feed an RMSNorm inside the layer (the first `rows`). */
  normEpsScaled(cfg: ModelConfig, i: number, a: A): ScaledRows[];
}

export const EXPORT_KINDS: { [K in AttentionKindName]: ExportKind<AttentionOf<K>> } = { gqa, mla, xkv };

/** Refuse, before any other check, a model with a layer of a kind no stock engine runs: the layers and why. */
export function assertStockKinds(cfg: ModelConfig, what: string, source: string): void {
  const reasons = new Map<string, number[]>();
  cfg.layers.forEach((a, i) => {
    const why = exportKind(a).refused;
    if (why !== null) reasons.set(why, [...(reasons.get(why) ?? []), i]);
  });
  if (reasons.size === 0) return;
  const lines = [...reasons].map(([why, ls]) => `layer(s) ${ls.join(', ')} ${why}`);
  throw new UserError(`${source}: cannot export to ${what}: ${lines.join('; ')}`);
}

/** The export module of a layer's kind (one cast, as model/attention attentionKind: the mapped type guarantees the
 *  entry matches the kind). */
export function exportKind(a: LayerAttention): ExportKind<LayerAttention> {
  return EXPORT_KINDS[a.kind] as unknown as ExportKind<LayerAttention>;
}

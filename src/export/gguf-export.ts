// Export to GGUF for llama.cpp: a model whose layers are all of one attention kind is written as the llama.cpp
// architecture of that kind (export/kinds/: GQA → `llama`, MLA → `deepseek2` with the latent-only K cache); the
// embedding, norms, FFN and common metadata are shared (gguf-tensors.ts), the vocabulary is added here.

import { basename } from 'node:path';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import type { AttentionKindName } from '../model/attention/index.js';
import { writeGguf } from '../io/gguf.js';
import { padVocab, vocabKvs, type GgufVocab } from './gguf-vocab.js';
import type { GgufDtype, GgufPlan } from './gguf-tensors.js';
import { assertStockKinds, EXPORT_KINDS } from './kinds/index.js';

export { GGUF_DTYPES, type GgufDtype, type GgufPlan } from './gguf-tensors.js';

export interface GgufExportOptions {
  dtype?: GgufDtype;
  /** Pad per-layer kv ranks to the largest (exact). */
  padRanks?: boolean;
  vocab: GgufVocab;
  /** general.name (default: the source's base name). */
  name?: string;
  /** Names the model in messages. */
  source?: string;
  /** Largest relative logit error a rope fit may cost (kinds/mla-rope-fit.ts). */
  ropeTolerance?: number;
}

/** The kind whose architecture a hybrid is planned in: MLA's stock checks refuse it, with every other reason at once
 *  (a hybrid is what a conversion keeping some teacher layers gives). */
const HYBRID_GGUF_KIND: AttentionKindName = 'mla';

/** Plan a GGUF export (metadata + tensors), refusing what llama.cpp cannot run with the reason and what to do. */
export function planGguf(cfg: ModelConfig, weights: Map<string, Tensor>, opts: GgufExportOptions): GgufPlan {
  const dtype = opts.dtype ?? 'f32';
  const source = opts.source ?? 'model';
  const name = opts.name ?? basename(source).replace(/\.(bin|gguf)$/, '');
  assertStockKinds(cfg, 'GGUF', source);
  const vocab = padVocab(opts.vocab, cfg.vocabSize);
  const kinds = new Set(cfg.layers.map((a) => a.kind));
  const kind = kinds.size === 1 ? [...kinds][0]! : HYBRID_GGUF_KIND;
  const plan = EXPORT_KINDS[kind].gguf(cfg, weights, { dtype, padRanks: opts.padRanks ?? false, name, source, ropeTolerance: opts.ropeTolerance });
  for (const [k, v] of vocabKvs(vocab)) plan.metadata.set(k, v);
  plan.notes.push(...vocab.notes);
  return plan;
}

/** Write a model as a GGUF file (atomically). Returns the plan (architecture, tensors, notes) for reporting. */
export function exportGguf(file: string, cfg: ModelConfig, weights: Map<string, Tensor>, opts: GgufExportOptions): GgufPlan {
  const plan = planGguf(cfg, weights, opts);
  writeGguf(file, plan.metadata, plan.tensors);
  return plan;
}

// The export job (library entry point of `mla export`): a model directory or llama2.c checkpoint → one GGUF file for
// llama.cpp (`llama` or `deepseek2`), or a stock DeepSeek-V3 HF directory for transformers / vLLM / SGLang.

import { checkOutput } from '../io/output.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel, type Loaded } from '../io/load.js';
import { Llama2cTokenizer } from '../io/llama2c-tokenizer.js';
import { tempNameFor, type SafetensorsDtype } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/binfile.js';
import { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { noGrad } from '../autograd/var.js';
import { getBackend } from '../backends/index.js';
import { OptionError, UserError } from '../errors.js';
import { exportGguf, GGUF_DTYPES, type GgufDtype } from './gguf-export.js';
import { findTokenizerJson, hfVocab, llama2cVocab, type GgufVocab } from './gguf-vocab.js';
import { exportHf } from './hf-export.js';
import { hfTokenizerFiles, type TextFile } from './hf-tokenizer.js';

export type ExportFormat = 'gguf' | 'hf';

export interface ExportOptions {
  format: ExportFormat;
  /** Output: one .gguf file, or a directory for 'hf'. */
  out: string;
  /** Weight dtype written: f32 | f16 | bf16, and q8_0 for GGUF (default f32). */
  dtype?: string;
  /** Tokenizer (llama2.c .bin or tokenizer.json) when the model has none beside it. */
  tokenizer?: string;
  /** Zero-pad per-layer ranks to the largest (stock layouts have one rank). */
  padRanks?: boolean;
  /** Replace an existing output. */
  overwrite?: boolean;
  /** Largest relative logit error a rope fit may cost (export/kinds/mla-rope-fit.ts; default 1e-2). */
  ropeTolerance?: number;
  /** Also write the source model's logits on `prompt` (JSON: prompt, ids, vocab_size, logits T×V) to this file. */
  dumpLogits?: string;
  prompt?: string;
}

export const DEFAULT_PROMPT = 'Once upon a time, there was a little girl named Lily.';

export interface ExportResult {
  format: ExportFormat;
  out: string;
  architecture: string;
  dtype: string;
  /** What the export changed or could not keep; option references are written {field} (errors.ts renderOptionRefs). */
  notes: string[];
}

/** The GGUF vocabulary for a loaded model: its llama2.c tokenizer, or the tokenizer.json it came with / was given. */
export function ggufVocabFor(loaded: Loaded, tokenizer: string | undefined): GgufVocab {
  if (loaded.tokenizer instanceof Llama2cTokenizer) return llama2cVocab(loaded.tokenizer);
  const file = loaded.tokenizer ? findTokenizerJson(loaded.source, tokenizer) : null;
  if (!file || !loaded.tokenizer) {
    throw new OptionError('tokenizer', undefined, `none found for ${loaded.source}, and GGUF carries the vocabulary: give {tokenizer} (a llama2.c tokenizer .bin or a tokenizer.json)`);
  }
  return hfVocab(file, loaded.tokenizer);
}

/** Tokenizer files of an HF export: a llama2.c tokenizer as tokenizer.json, a tokenizer.json with its config. */
export function hfTokenizerFor(loaded: Loaded, tokenizer: string | undefined): { files: TextFile[]; notes: string[] } {
  const max = loaded.config.maxPositions;
  if (loaded.tokenizer instanceof Llama2cTokenizer) {
    return {
      files: hfTokenizerFiles({ llama2c: llama2cVocab(loaded.tokenizer) }, max),
      notes: ['llama2.c tokenizer written as tokenizer.json (SentencePiece-style BPE, byte fallback) + tokenizer_config.json for AutoTokenizer'],
    };
  }
  const file = loaded.tokenizer ? findTokenizerJson(loaded.source, tokenizer) : null;
  if (!file || !loaded.tokenizer) return { files: [], notes: ['no tokenizer found: the export has none (give {tokenizer} for AutoTokenizer to load one)'] };
  const cfg = join(dirname(file), 'tokenizer_config.json');
  return {
    files: hfTokenizerFiles({ tokenizerJson: file, tokenizerConfig: existsSync(cfg) ? cfg : null, bosId: loaded.tokenizer.bosId, eosId: loaded.tokenizer.eosId }, max),
    notes: existsSync(cfg) ? [] : ['tokenizer_config.json written (PreTrainedTokenizerFast) beside the copied tokenizer.json'],
  };
}

/** Our logits (the source model, before any export rewrite) on a prompt, as JSON for scripts/check-transformers.py. */
export function dumpLogits(loaded: Loaded, file: string, prompt: string): void {
  if (!loaded.tokenizer) throw new OptionError('dumpLogits', file, `${loaded.source} has no tokenizer (give {tokenizer})`);
  const ids = loaded.tokenizer.encode(prompt, true);
  const model = Model.fromWeights(loaded.config, loaded.weights, getBackend('auto'));
  const data = noGrad(() => forward(model, Int32Array.from(ids), 1, ids.length).value.toHost());
  const V = loaded.config.vocabSize;
  const logits = ids.map((_, t) => Array.from(data.subarray(t * V, (t + 1) * V)));
  const text = JSON.stringify({ prompt, ids, vocab_size: V, logits }) + '\n';
  writeFileAtomic(file, tempNameFor(file), (write) => write(new TextEncoder().encode(text)));
}

/** Export the model at `path`; nothing is left at `out` on failure. */
export function exportModel(path: string, o: ExportOptions): ExportResult {
  const dtypeName = o.dtype ?? 'f32';
  // Before anything is loaded: never an input, writable, and --overwrite only of our own outputs (io/output.ts).
  checkOutput({ flag: '{out}', out: o.out, inputs: [path, o.tokenizer], kind: o.format === 'gguf' ? 'file' : 'dir', overwrite: o.overwrite ?? false });
  if (o.format === 'gguf') {
    if (!(GGUF_DTYPES as readonly string[]).includes(dtypeName)) throw new OptionError('dtype', undefined, `expected ${GGUF_DTYPES.join(', ')} for GGUF, got '${dtypeName}'`);
    const loaded = loadModel(path, { tokenizer: o.tokenizer });
    const plan = exportGguf(o.out, loaded.config, loaded.weights, {
      dtype: dtypeName as GgufDtype, padRanks: o.padRanks ?? false, ropeTolerance: o.ropeTolerance, vocab: ggufVocabFor(loaded, o.tokenizer), source: path,
    });
    if (o.dumpLogits) dumpLogits(loaded, o.dumpLogits, o.prompt ?? DEFAULT_PROMPT);
    return { format: 'gguf', out: o.out, architecture: plan.arch, dtype: dtypeName, notes: plan.notes };
  }
  if (o.format !== 'hf') throw new UserError(`export: format: expected gguf or hf, got '${String(o.format)}'`);
  const dt: Record<string, SafetensorsDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const dtype = dt[dtypeName];
  if (!dtype) throw new OptionError('dtype', undefined, `expected f32, f16 or bf16 for the hf format, got '${dtypeName}'`);
  const loaded = loadModel(path, { tokenizer: o.tokenizer });
  const tok = hfTokenizerFor(loaded, o.tokenizer);
  const r = exportHf(o.out, loaded.config, loaded.weights, {
    dtype, padRanks: o.padRanks ?? false, ropeTolerance: o.ropeTolerance, overwrite: o.overwrite ?? false, writeFiles: tok.files, source: path,
  });
  if (o.dumpLogits) dumpLogits(loaded, o.dumpLogits, o.prompt ?? DEFAULT_PROMPT);
  return { format: 'hf', out: o.out, architecture: 'DeepseekV3ForCausalLM', dtype: dtypeName, notes: [...r.notes, ...tok.notes] };
}

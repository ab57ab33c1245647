// The export job (library entry point of `mla export`): a model directory or llama2.c checkpoint → one GGUF file for
// llama.cpp (`llama` or `deepseek2`), or a stock DeepSeek-V3 HF directory for transformers / vLLM / SGLang.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { loadModel, type Loaded } from '../io/load.js';
import { Llama2cTokenizer } from '../io/llama2c-tokenizer.js';
import { tokenizerFiles } from '../io/tokenizer-files.js';
import type { SafetensorsDtype } from '../io/safetensors.js';
import { OptionError, UserError } from '../errors.js';
import { exportGguf, GGUF_DTYPES, type GgufDtype } from './gguf-export.js';
import { findTokenizerJson, hfVocab, llama2cVocab, type GgufVocab } from './gguf-vocab.js';
import { exportHf } from './hf-export.js';

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
  /** Largest relative logit error a rope fit may cost (export/rope-fit.ts; default 1e-2). */
  ropeTolerance?: number;
}

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

/** Export the model at `path`; nothing is left at `out` on failure. */
export function exportModel(path: string, o: ExportOptions): ExportResult {
  const dtypeName = o.dtype ?? 'f32';
  if (existsSync(o.out) && !o.overwrite && (o.format === 'gguf' || !statSync(o.out).isDirectory() || readdirSync(o.out).length > 0)) {
    throw new OptionError('out', o.out, 'already exists (add {overwrite})');
  }
  if (o.format === 'gguf') {
    if (!(GGUF_DTYPES as readonly string[]).includes(dtypeName)) throw new OptionError('dtype', undefined, `expected ${GGUF_DTYPES.join(', ')} for GGUF, got '${dtypeName}'`);
    if (existsSync(o.out) && statSync(o.out).isDirectory()) throw new OptionError('out', o.out, 'is a directory; GGUF is one file');
    const loaded = loadModel(path, { tokenizer: o.tokenizer });
    const plan = exportGguf(o.out, loaded.config, loaded.weights, {
      dtype: dtypeName as GgufDtype, padRanks: o.padRanks ?? false, ropeTolerance: o.ropeTolerance, vocab: ggufVocabFor(loaded, o.tokenizer), source: path,
    });
    return { format: 'gguf', out: o.out, architecture: plan.arch, dtype: dtypeName, notes: plan.notes };
  }
  if (o.format !== 'hf') throw new UserError(`export: format: expected gguf or hf, got '${String(o.format)}'`);
  const dt: Record<string, SafetensorsDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const dtype = dt[dtypeName];
  if (!dtype) throw new OptionError('dtype', undefined, `expected f32, f16 or bf16 for the hf format, got '${dtypeName}'`);
  const loaded = loadModel(path, { tokenizer: o.tokenizer });
  const r = exportHf(o.out, loaded.config, loaded.weights, {
    dtype, padRanks: o.padRanks ?? false, ropeTolerance: o.ropeTolerance, overwrite: o.overwrite ?? false, copyFiles: tokenizerFiles(path, o.tokenizer), source: path,
  });
  return { format: 'hf', out: o.out, architecture: 'DeepseekV3ForCausalLM', dtype: dtypeName, notes: r.notes };
}

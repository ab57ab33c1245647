// mla export MODEL --format gguf --out FILE.gguf [--dtype f32|f16|bf16|q8_0] [--tokenizer FILE] [--pad-ranks] [--rope-tolerance E] [--overwrite] [--json]
// mla export MODEL --format hf --out DIR [--dtype f32|f16|bf16] [--tokenizer FILE] [--pad-ranks] [--overwrite] [--json]

import { existsSync, readdirSync, statSync } from 'node:fs';
import { commonFlags, num, onePositional, parse, type CommandSpec } from './args.js';
import { tokenizerFiles } from './convert.js';
import { table } from '../report/table.js';
import { loadModel, type Loaded } from '../io/load.js';
import { Llama2cTokenizer } from '../io/llama2c-tokenizer.js';
import { UserError } from '../errors.js';
import { exportGguf, GGUF_DTYPES, type GgufDtype } from '../export/gguf-export.js';
import { findTokenizerJson, hfVocab, llama2cVocab, type GgufVocab } from '../export/gguf-vocab.js';
import { exportHf } from '../export/hf-export.js';
import type { SafetensorsDtype } from '../io/safetensors.js';

export const exportSpec = {
  name: 'export',
  args: 'MODEL',
  flags: {
    format: { type: 'string', value: 'gguf|hf', doc: 'GGUF for llama.cpp, or the stock DeepSeek-V3 HF layout (required)' },
    out: { type: 'string', value: 'FILE.gguf|DIR', doc: 'output file (gguf) or directory (hf) (required)' },
    dtype: { type: 'string', value: 'f32|f16|bf16|q8_0', default: 'f32', doc: 'weight dtype written (q8_0: GGUF only)' },
    'pad-ranks': { type: 'boolean', default: false, doc: 'zero-pad per-layer ranks to the largest (stock layouts have one rank)' },
    'rope-tolerance': {
      type: 'string', value: 'E', default: '0.01',
      doc: 'largest relative logit error allowed when rope frequencies need the nearest geometric run (stock engines)',
    },
    overwrite: { type: 'boolean', default: false, doc: 'replace an existing --out' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export interface ExportCommandOptions {
  format: 'gguf' | 'hf';
  out: string;
  dtype: string;
  tokenizer?: string;
  padRanks: boolean;
  overwrite: boolean;
  /** Largest relative logit error a rope fit may cost (export/rope-fit.ts; default 1e-2). */
  ropeTolerance?: number;
}

export interface ExportResult {
  format: 'gguf' | 'hf';
  out: string;
  architecture: string;
  dtype: string;
  notes: string[];
}

/** The GGUF vocabulary for a loaded model: its llama2.c tokenizer, or the tokenizer.json it came with / was given. */
export function ggufVocabFor(loaded: Loaded, tokenizer: string | undefined): GgufVocab {
  if (loaded.tokenizer instanceof Llama2cTokenizer) return llama2cVocab(loaded.tokenizer);
  const file = loaded.tokenizer ? findTokenizerJson(loaded.source, tokenizer) : null;
  if (!file || !loaded.tokenizer) {
    throw new UserError(`${loaded.source}: GGUF carries the vocabulary and none was found: give --tokenizer (a llama2.c tokenizer .bin or a tokenizer.json)`);
  }
  return hfVocab(file, loaded.tokenizer);
}

/** Export a model (library entry point of `mla export`). */
export function exportModel(path: string, o: ExportCommandOptions): ExportResult {
  if (existsSync(o.out) && !o.overwrite && (o.format === 'gguf' || !statSync(o.out).isDirectory() || readdirSync(o.out).length > 0)) {
    throw new UserError(`--out ${o.out}: already exists (add --overwrite)`);
  }
  const loaded = loadModel(path, { tokenizer: o.tokenizer });
  if (o.format === 'gguf') {
    if (!(GGUF_DTYPES as readonly string[]).includes(o.dtype)) throw new UserError(`--dtype: expected ${GGUF_DTYPES.join(', ')} for GGUF, got '${o.dtype}'`);
    if (existsSync(o.out) && statSync(o.out).isDirectory()) throw new UserError(`--out ${o.out}: is a directory; GGUF is one file`);
    const plan = exportGguf(o.out, loaded.config, loaded.weights, {
      dtype: o.dtype as GgufDtype, padRanks: o.padRanks, ropeTolerance: o.ropeTolerance, vocab: ggufVocabFor(loaded, o.tokenizer), source: path,
    });
    return { format: 'gguf', out: o.out, architecture: plan.arch, dtype: o.dtype, notes: plan.notes };
  }
  const dt: Record<string, SafetensorsDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const dtype = dt[o.dtype];
  if (!dtype) throw new UserError(`--dtype: expected f32, f16 or bf16 for --format hf, got '${o.dtype}'`);
  const r = exportHf(o.out, loaded.config, loaded.weights, {
    dtype, padRanks: o.padRanks, ropeTolerance: o.ropeTolerance, overwrite: o.overwrite, copyFiles: tokenizerFiles(path, o.tokenizer), source: path,
  });
  return { format: 'hf', out: o.out, architecture: 'DeepseekV3ForCausalLM', dtype: o.dtype, notes: r.notes };
}

export async function exportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, exportSpec);
  const path = onePositional(positionals, 'MODEL', 'export');
  const format = values.format;
  if (format !== 'gguf' && format !== 'hf') throw new UserError(`mla export: --format gguf|hf is required${format ? ` (got '${format}')` : ''}`);
  if (!values.out) throw new UserError(`mla export: --out ${format === 'gguf' ? 'FILE.gguf' : 'DIR'} is required`);
  const r = exportModel(path, {
    format, out: values.out, dtype: values.dtype ?? 'f32', tokenizer: values.tokenizer, padRanks: values['pad-ranks'] ?? false,
    overwrite: values.overwrite ?? false,
    ropeTolerance: values['rope-tolerance'] === undefined ? undefined : num(values['rope-tolerance'], 'rope-tolerance', 0, (n) => n >= 0, 'a non-negative number'),
  });
  if (values.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    table(['format', 'architecture', 'dtype', 'out'], [[r.format, r.architecture, r.dtype, r.out]]) +
      '\n' + r.notes.map((n) => `note: ${n}\n`).join('') + `wrote ${r.out}\n`,
  );
}

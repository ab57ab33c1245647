// mla export MODEL --format gguf --out FILE.gguf [--dtype f32|f16|bf16|q8_0] [--tokenizer FILE] [--pad-ranks] [--rope-tolerance E] [--overwrite] [--json]
// mla export MODEL --format hf --out DIR [--dtype f32|f16|bf16] [--tokenizer FILE] [--pad-ranks] [--overwrite] [--json]
//   [--dump-logits FILE [--prompt TEXT]]   our logits for scripts/check-transformers.py

import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { commonFlags, num, onePositional, parse, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { loadModel, type Loaded } from '../io/load.js';
import { Llama2cTokenizer } from '../io/llama2c-tokenizer.js';
import { UserError } from '../errors.js';
import { exportGguf, GGUF_DTYPES, type GgufDtype } from '../export/gguf-export.js';
import { findTokenizerJson, hfVocab, llama2cVocab, type GgufVocab } from '../export/gguf-vocab.js';
import { exportHf } from '../export/hf-export.js';
import { hfTokenizerFiles, type TextFile } from '../export/hf-tokenizer.js';
import { tempNameFor, type SafetensorsDtype } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/binfile.js';
import { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { noGrad } from '../autograd/var.js';
import { getBackend } from '../backends/index.js';

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
    'dump-logits': { type: 'string', value: 'FILE', doc: "also write our logits on --prompt as JSON (scripts/check-transformers.py compares transformers' with them)" },
    prompt: { type: 'string', value: 'TEXT', default: 'Once upon a time, there was a little girl named Lily.', doc: 'text for --dump-logits' },
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
  /** Write the source model's logits on `prompt` (JSON: prompt, ids, vocab_size, logits T×V) to this file. */
  dumpLogits?: string;
  prompt?: string;
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
  if (!file || !loaded.tokenizer) return { files: [], notes: ['no tokenizer found: the export has none (give --tokenizer for AutoTokenizer to load one)'] };
  const cfg = join(dirname(file), 'tokenizer_config.json');
  return {
    files: hfTokenizerFiles({ tokenizerJson: file, tokenizerConfig: existsSync(cfg) ? cfg : null, bosId: loaded.tokenizer.bosId, eosId: loaded.tokenizer.eosId }, max),
    notes: existsSync(cfg) ? [] : ['tokenizer_config.json written (PreTrainedTokenizerFast) beside the copied tokenizer.json'],
  };
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
    if (o.dumpLogits) dumpLogits(loaded, o.dumpLogits, o.prompt ?? exportSpec.flags.prompt.default);
    return { format: 'gguf', out: o.out, architecture: plan.arch, dtype: o.dtype, notes: plan.notes };
  }
  const dt: Record<string, SafetensorsDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const dtype = dt[o.dtype];
  if (!dtype) throw new UserError(`--dtype: expected f32, f16 or bf16 for --format hf, got '${o.dtype}'`);
  const tok = hfTokenizerFor(loaded, o.tokenizer);
  const r = exportHf(o.out, loaded.config, loaded.weights, {
    dtype, padRanks: o.padRanks, ropeTolerance: o.ropeTolerance, overwrite: o.overwrite, writeFiles: tok.files, source: path,
  });
  if (o.dumpLogits) dumpLogits(loaded, o.dumpLogits, o.prompt ?? exportSpec.flags.prompt.default);
  return { format: 'hf', out: o.out, architecture: 'DeepseekV3ForCausalLM', dtype: o.dtype, notes: [...r.notes, ...tok.notes] };
}

/** Our logits (the source model, before any export rewrite) on a prompt, as JSON for scripts/check-transformers.py. */
export function dumpLogits(loaded: Loaded, file: string, prompt: string): void {
  if (!loaded.tokenizer) throw new UserError(`--dump-logits: ${loaded.source} has no tokenizer (give --tokenizer)`);
  const ids = loaded.tokenizer.encode(prompt, true);
  const model = Model.fromWeights(loaded.config, loaded.weights, getBackend('auto'));
  const data = noGrad(() => forward(model, Int32Array.from(ids), 1, ids.length).value.data);
  const V = loaded.config.vocabSize;
  const logits = ids.map((_, t) => Array.from(data.subarray(t * V, (t + 1) * V)));
  const text = JSON.stringify({ prompt, ids, vocab_size: V, logits }) + '\n';
  writeFileAtomic(file, tempNameFor(file), (write) => write(new TextEncoder().encode(text)));
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
    dumpLogits: values['dump-logits'], prompt: values.prompt,
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

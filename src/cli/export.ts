// mla export MODEL --format gguf --out FILE.gguf [--dtype f32|f16|bf16|q8_0] [--tokenizer FILE] [--pad-ranks] [--rope-tolerance E] [--overwrite] [--json]
// mla export MODEL --format hf --out DIR [--dtype f32|f16|bf16] [--tokenizer FILE] [--pad-ranks] [--overwrite] [--json]
//   [--dump-logits FILE [--prompt TEXT]]   our logits for scripts/check-transformers.py

import { cliText, commonFlags, num, onePositional, parse, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { UserError } from '../errors.js';
import { exportModel } from '../export/export.js';

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

export async function exportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, exportSpec);
  const path = onePositional(positionals, 'MODEL', 'export');
  const format = values.format;
  if (format !== 'gguf' && format !== 'hf') throw new UserError(`mla export: --format gguf|hf is required${format ? ` (got '${format}')` : ''}`);
  if (!values.out) throw new UserError(`mla export: --out ${format === 'gguf' ? 'FILE.gguf' : 'DIR'} is required`);
  const r = exportModel(path, {
    format, out: values.out, dtype: values.dtype, tokenizer: values.tokenizer, padRanks: values['pad-ranks'], overwrite: values.overwrite,
    dumpLogits: values['dump-logits'], prompt: values.prompt,
    ropeTolerance: values['rope-tolerance'] === undefined ? undefined : num(values['rope-tolerance'], 'rope-tolerance', 0, (n) => n >= 0, 'a non-negative number'),
  });
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...r, notes: r.notes.map((n) => cliText(exportSpec, n)) }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    table(['format', 'architecture', 'dtype', 'out'], [[r.format, r.architecture, r.dtype, r.out]]) +
      '\n' + r.notes.map((n) => `note: ${cliText(exportSpec, n)}\n`).join('') + `wrote ${r.out}\n`,
  );
}

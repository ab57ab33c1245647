// Training-free conversion quality: held-out perplexity of the converted model at several KV compressions, for every
// rope method and basis. Usage: node dist/bench/convert-sweep.js [--text FILE] [--ctx N] [--json] [--backend B]
//   [--methods transmla,mha2mla] [--bases activation] [--nope-inits mean-rotation] [--rope-rules free,geometric]
// --rope-rules compares the rope choice per layer ('free', every layer its own frequencies, native only) with the
// exportable shared choice ('geometric', the default; 'unscaled' for vLLM/SGLang).
// Prints a markdown table (README "Conversion") and, with --json, one JSON line per cell.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { openModel } from '../src/infer/open.js';
import { Model } from '../src/model/model.js';
import { perplexity } from '../src/eval/perplexity.js';
import { convert, NOPE_INITS } from '../src/convert/convert.js';
import { ROPE_METHODS } from '../src/convert/rope-select.js';
import { BASIS_METHODS } from '../src/convert/basis.js';
import type { RopeRule } from '../src/convert/targets.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fixtures/stories260K/stories260K.bin' },
    tokenizer: { type: 'string', default: 'fixtures/stories260K/tok512.bin' },
    text: { type: 'string', default: 'fixtures/heldout/stories-heldout.txt' },
    ctx: { type: 'string', default: '256' },
    backend: { type: 'string', default: 'auto' },
    json: { type: 'boolean', default: false },
    methods: { type: 'string', default: ROPE_METHODS.join(',') },
    bases: { type: 'string', default: BASIS_METHODS.join(',') },
    'nope-inits': { type: 'string', default: NOPE_INITS.join(',') },
    'rope-rules': { type: 'string', default: 'geometric' },
  },
});
const list = <T extends string>(s: string, all: readonly T[], flag: string): T[] => {
  const xs = s.split(',') as T[];
  for (const x of xs) if (!all.includes(x)) throw new Error(`--${flag}: '${x}' is not one of ${all.join(', ')}`);
  return xs;
};
const methods = list(values.methods, ROPE_METHODS, 'methods');
const bases = list(values.bases, BASIS_METHODS, 'bases');
const nopeInits = list(values['nope-inits'], NOPE_INITS, 'nope-inits');
const ropeRules = list<RopeRule>(values['rope-rules'], ['free', 'geometric', 'unscaled'], 'rope-rules');
const ctx = Number(values.ctx);
const opened = openModel(values.model, { tokenizer: values.tokenizer, backend: values.backend });
const teacher = opened.model;
const ids = opened.tokenizer!.encode(readFileSync(values.text, 'utf8'), true);
const base = perplexity(teacher, ids, ctx);
// (ratio, rope dims): the shapes of the reference table: 4× = 12+4, 6.4× = 6+4, 10.7× = 4+2.
const settings: [number, number][] = [[2, 4], [4, 4], [6.4, 4], [10, 2]];
const rows: string[][] = [];
process.stderr.write(`teacher perplexity ${base.perplexity.toFixed(3)} on ${base.tokens} tokens\n`);
for (const nopeInit of nopeInits) for (const basis of bases) for (const ropeRule of ropeRules) {
  for (const method of methods) {
    const row: string[] = [method, ropeRule, basis, nopeInit];
    for (const [ratio, ropeDim] of settings) {
      const r = convert(teacher, opened.tokenizer, {
        plan: { kind: 'ratio', ratio }, ropeDim, ropeMethod: method, ropeRule, basis, qRank: null, latentNorm: false, nopeInit, keepLayers: [],
        calib: { samples: 32, length: 256, seed: 1234 },
      });
      const student = Model.fromWeights(r.config, r.weights, teacher.be);
      const p = perplexity(student, ids, ctx);
      const rank = r.layers[0]!.kvRank!;
      row.push(`${p.perplexity.toFixed(2)}`);
      if (values.json) process.stdout.write(JSON.stringify({ method, rope_rule: ropeRule, basis, nope_init: nopeInit, ratio: r.compression, kv_rank: rank, rope_dim: ropeDim, ppl: p.perplexity }) + '\n');
      process.stderr.write(`${method} ${ropeRule} ${basis} ${nopeInit} ${r.compression.toFixed(2)}× (${rank}+${ropeDim}): ${p.perplexity.toFixed(3)}\n`);
    }
    rows.push(row);
  }
}
if (!values.json) {
  const head = ['rope method', 'rope rule', 'basis', 'no-rope init', ...settings.map(([x, d]) => `${x}× (r_kv ${Math.round((2 * 32) / x - d)} + d_r ${d})`)];
  const lines = [`teacher perplexity: ${base.perplexity.toFixed(2)} (${base.tokens} tokens, windows of ${ctx})`, '', `| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  process.stdout.write(lines.join('\n') + '\n');
}

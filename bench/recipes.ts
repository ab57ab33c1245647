// The seed papers' recipes against ours at equal KV bytes, training-free: held-out perplexity of each conversion on
// one or more texts (one text can mislead). Rows: x-ecomla, mha2mla, transmla (`mla convert --recipe R`), ours (the
// defaults), ours with --search, ours with --keep-layers auto:K (a hybrid at the same total KV bytes; '-' where the
// budget cannot hold K original layers); columns: KV compression (r_kv + d_r) × text.
// Usage: node dist/bench/recipes.js [--model M --tokenizer T] [--texts a.txt,b.txt] [--ctx N] [--ratios 2:4,4:4,6.4:4,10:2]
//   [--recipes x-ecomla,mha2mla,transmla,ours,search,auto:1] [--freqfold F|auto] [--kv-balance energy|transmla] [--json]
// --freqfold / --kv-balance override the transmla recipe's (auto / transmla) to compare its parts; `--freqfold 1
// --kv-balance energy` is the transmla recipe before FreqFold and TransMLA's balance were added.
// The transmla recipe's `auto` fold is chosen as `mla convert` does (PlanSearch.freqfold) and shown in stderr.
// Prints a markdown table (README "Conversion recipes") and, with --json, one JSON line per cell.

import { parseArgs } from 'node:util';
import { basename } from 'node:path';
import { openModel } from '../src/infer/open.js';
import { Model } from '../src/model/model.js';
import { perplexity } from '../src/eval/perplexity.js';
import { readUtf8File } from '../src/io/text.js';
import { convert } from '../src/convert/convert.js';
import { withConvertDefaults } from '../src/convert/defaults.js';
import { RECIPE_OPTIONS, isRecipe } from '../src/convert/recipes.js';
import { PlanSearch } from '../src/convert/search.js';
import { UserError } from '../src/errors.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fixtures/stories260K/stories260K.bin' },
    tokenizer: { type: 'string', default: 'fixtures/stories260K/tok512.bin' },
    texts: { type: 'string', default: 'fixtures/heldout/stories-heldout.txt' },
    ctx: { type: 'string', default: '256' },
    ratios: { type: 'string', default: '2:4,4:4,6.4:4,10:2' },
    recipes: { type: 'string', default: 'x-ecomla,mha2mla,transmla,ours,search,auto:1' },
    backend: { type: 'string', default: 'auto' },
    freqfold: { type: 'string' },
    'kv-balance': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const ctx = Number(values.ctx);
const settings = values.ratios.split(',').map((s) => s.split(':').map(Number) as [number, number]);
const recipes = values.recipes.split(',');
const ours = (r: string) => r === 'ours' || r === 'search' || /^auto:\d+$/.test(r);
for (const r of recipes) if (!ours(r) && !isRecipe(r)) throw new Error(`--recipes: '${r}' is not a recipe, ours, search or auto:K`);
const opened = openModel(values.model, { tokenizer: values.tokenizer, backend: values.backend });
const teacher = opened.model;
const texts = values.texts.split(',').map((f) => ({ name: basename(f), ids: opened.tokenizer!.encode(readUtf8File(f, f), true) }));
const teacherPpl = texts.map((t) => perplexity(teacher, t.ids, ctx).perplexity);
process.stderr.write(`teacher: ${texts.map((t, i) => `${t.name} ${teacherPpl[i]!.toFixed(3)}`).join(', ')}\n`);
const rows: string[][] = [];
for (const recipe of recipes) {
  const row = [recipe];
  for (const [ratio, ropeDim] of settings) {
    let opts = withConvertDefaults({ ...(ours(recipe) ? {} : RECIPE_OPTIONS[recipe as keyof typeof RECIPE_OPTIONS]), plan: { kind: 'ratio', ratio }, ropeDim });
    if (recipe === 'transmla') {
      if (values.freqfold !== undefined) opts.freqfold = values.freqfold === 'auto' ? 'auto' : Number(values.freqfold);
      if (values['kv-balance'] !== undefined) opts.kvBalance = values['kv-balance'] as 'energy' | 'transmla';
    }
    let r;
    let fold = '';
    try {
      if (opts.freqfold === 'auto') {
        const s = new PlanSearch(teacher, opened.tokenizer, opts);
        const c = s.freqfold(opts);
        opts = { ...opts, freqfold: c.freqfold };
        fold = ` freqfold ${c.freqfold} (KL ${c.tried.map((t) => `${t.freqfold}: ${t.kl.toFixed(4)}`).join(', ')})`;
        r = convert(teacher, opened.tokenizer, opts, undefined, { stats: s.stats });
      } else if (recipe === 'search' || recipe.startsWith('auto:')) {
        const s = new PlanSearch(teacher, opened.tokenizer, opts);
        if (recipe === 'search') opts = s.plan(opts).options;
        else opts = { ...opts, keepLayers: s.autoKeep(opts, Number(recipe.slice(5))).keep };
        r = convert(teacher, opened.tokenizer, opts, undefined, { stats: s.stats });
      } else {
        r = convert(teacher, opened.tokenizer, opts);
      }
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      process.stderr.write(`${recipe} ${ratio}×: ${e.message}\n`);
      for (const _ of texts) row.push('-');
      continue;
    }
    const student = Model.fromWeights(r.config, r.weights, teacher.be);
    texts.forEach((t) => {
      const p = perplexity(student, t.ids, ctx).perplexity;
      row.push(p.toFixed(2));
      const rank = r.layers.map((l) => l.kvRank ?? 'kept').join(',');
      const dr = r.layers.find((l) => l.ropeDim !== null)?.ropeDim ?? ropeDim;
      if (values.json) process.stdout.write(JSON.stringify({ recipe, text: t.name, ratio: r.compression, kv_rank: rank, rope_dim: dr, freqfold: opts.freqfold ?? 1, ppl: p }) + '\n');
      process.stderr.write(`${recipe} ${r.compression.toFixed(2)}× (${rank}+${dr})${fold} ${t.name}: ${p.toFixed(3)}\n`);
    });
  }
  rows.push(row);
}
if (!values.json) {
  const head = ['recipe', ...settings.flatMap(([x, d]) => texts.map((t) => `${x}× (d_r ${d}) ${texts.length > 1 ? t.name : ''}`.trim()))];
  const lines = [`teacher: ${texts.map((t, i) => `${t.name} ${teacherPpl[i]!.toFixed(2)}`).join(', ')} (windows of ${ctx})`, '', `| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  process.stdout.write(lines.join('\n') + '\n');
}

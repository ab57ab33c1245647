// The seed papers' recipes against ours at equal KV bytes: held-out perplexity of each conversion on one or more texts
// (one text can mislead), training-free and (--distill) after the same distillation. Rows: x-ecomla, mha2mla, transmla
// (`mla convert --recipe R`), ours (the defaults), ours with --search, ours with --keep-layers auto:K (a hybrid at the
// same total KV bytes; '-' where the budget cannot hold K original layers), ours with --share-latent G (xkv:G, xKV);
// columns: KV compression (r_kv + d_r) × text.
// --distill TOKENS: every student is then distilled as `mla distill` does (train/run.ts runDistill, its defaults) for
// TOKENS tokens, all on the same teacher samples (drawn once, seed 1) and the same data order; a conversion identical
// to an earlier row's (mha2mla picks x-ecomla's pairs on stories260K) reuses that row's distillation. Runs go to --work
// DIR (default: a temporary directory, removed at the end); a cell whose DIR/<cell>/bench.json exists is read back, so
// an interrupted run continues where it stopped.
// Every cell is measured twice on each text: perplexity and the mean KL(teacher ‖ student) per token (see scores()).
// Usage: node dist/bench/recipes.js [--model M --tokenizer T] [--texts a.txt,b.txt] [--ctx N] [--ratios 2:4,4:4,6.4:4,10:2]
//   [--recipes x-ecomla,mha2mla,transmla,ours,search,auto:1,xkv:2] [--freqfold F|auto] [--kv-balance energy|transmla]
//   [--distill TOKENS [--seed S] [--sample-temperature τ] [--work DIR]] [--json]
// --seed: the distillations' seed (teacher samples and data order; default 1), to measure the seed noise;
// --sample-temperature: the teacher samples' (default: mla distill's).
// --freqfold / --kv-balance override the transmla recipe's (auto / transmla) to compare its parts; `--freqfold 1
// --kv-balance energy` is the transmla recipe before FreqFold and TransMLA's balance were added.
// The transmla recipe's `auto` fold is chosen as `mla convert` does (PlanSearch.freqfold) and shown in stderr.
// Prints a markdown table (README "Conversion recipes") and, with --json, one JSON line per cell.

import { parseArgs } from 'node:util';
import { basename, join } from 'node:path';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { openModel } from '../src/infer/open.js';
import { Model } from '../src/model/model.js';
import { perplexity } from '../src/eval/perplexity.js';
import { compareModels } from '../src/eval/compare.js';
import { readUtf8File } from '../src/io/text.js';
import { writeTextAtomic } from '../src/io/run-files.js';
import { tokenizerFiles } from '../src/io/tokenizer-files.js';
import { convert, type ConvertResult } from '../src/convert/convert.js';
import { convertSharedLatent } from '../src/convert/xkv.js';
import { saveConverted } from '../src/convert/record.js';
import { withConvertDefaults } from '../src/convert/defaults.js';
import { RECIPE_OPTIONS, isRecipe } from '../src/convert/recipes.js';
import { PlanSearch } from '../src/convert/search.js';
import { DISTILL_DEFAULTS, drawTeacherSamples, resolveSettings, runDistill } from '../src/train/run.js';
import { UserError } from '../src/errors.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fixtures/stories260K/stories260K.bin' },
    tokenizer: { type: 'string', default: 'fixtures/stories260K/tok512.bin' },
    texts: { type: 'string', default: 'fixtures/heldout/stories-heldout.txt' },
    ctx: { type: 'string', default: '256' },
    ratios: { type: 'string', default: '2:4,4:4,6.4:4,10:2' },
    recipes: { type: 'string', default: 'x-ecomla,mha2mla,transmla,ours,search,auto:1,xkv:2' },
    distill: { type: 'string' },
    work: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    freqfold: { type: 'string' },
    'kv-balance': { type: 'string' },
    seed: { type: 'string', default: '1' },
    'sample-temperature': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const ctx = Number(values.ctx);
const settings = values.ratios.split(',').map((s) => s.split(':').map(Number) as [number, number]);
const recipes = values.recipes.split(',');
const ours = (r: string) => r === 'ours' || r === 'search' || /^auto:\d+$/.test(r) || /^xkv:\d+$/.test(r);
for (const r of recipes) if (!ours(r) && !isRecipe(r)) throw new Error(`--recipes: '${r}' is not a recipe, ours, search, auto:K or xkv:G`);
const distillTokens = values.distill === undefined ? null : Number(values.distill);
if (distillTokens !== null && !(Number.isInteger(distillTokens) && distillTokens > 0)) throw new Error(`--distill: expected a positive integer of tokens, got '${values.distill}'`);
const opened = openModel(values.model, { tokenizer: values.tokenizer, backend: values.backend });
const teacher = opened.model;
const texts = values.texts.split(',').map((f) => ({ name: basename(f), ids: opened.tokenizer!.encode(readUtf8File(f, f), true) }));
const teacherPpl = texts.map((t) => perplexity(teacher, t.ids, ctx).perplexity);
process.stderr.write(`teacher: ${texts.map((t, i) => `${t.name} ${teacherPpl[i]!.toFixed(3)}`).join(', ')}\n`);

// Distillation: the defaults of `mla distill` but for the token budget; evaluation and checkpoints only at the end
// (they do not change the trajectory, and at a few dozen steps every-step evaluation would cost more than training).
const work = distillTokens === null ? null : values.work ?? mkdtempSync(join(tmpdir(), 'mla-recipes-'));
const seed = Number(values.seed);
const distillSettings = distillTokens === null ? null : resolveSettings({ tokens: distillTokens, seed });
const distillOverrides = distillSettings && { tokens: distillTokens!, seed, evalEvery: distillSettings.steps, checkpointEvery: distillSettings.steps };
// One epoch of distinct teacher samples, drawn once: every student trains on the same sequences in the same order.
const sampleTemperature = Number(values['sample-temperature'] ?? DISTILL_DEFAULTS.sampleTemperature);
const samples = distillSettings && drawTeacherSamples(teacher, distillSettings.steps * distillSettings.batch, distillSettings, { temperature: sampleTemperature, topP: DISTILL_DEFAULTS.sampleTopP });
if (work) process.stderr.write(`distilling every student for ${distillTokens} tokens (${distillSettings!.steps} steps of ${distillSettings!.batch} × ${distillSettings!.seq}, ${samples!.train.length} teacher samples) in ${work}\n`);

/** A conversion's identity: its config and every weight (two recipes that give the same student share a distillation). */
function fingerprint(r: ConvertResult): string {
  const h = createHash('sha256').update(JSON.stringify(r.config));
  for (const name of [...r.weights.keys()].sort()) {
    const d = r.weights.get(name)!.toF32();
    h.update(name).update(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

/** Perplexity and mean KL(teacher ‖ model) per token on each text. */
interface Scores { ppl: number[]; kl: number[] }
interface Distilled extends Scores { fingerprint: string; seconds: number }

// A student can score a LOWER perplexity than its teacher on real text (a weak teacher that is overconfident there:
// a flatter, less recovered student pays less for its misses), so perplexity alone can rank a worse conversion
// first. KL to the teacher on the same windows is what conversion and distillation minimise; both are measured.
function scores(m: Model): Scores {
  const rows = texts.map((t) => compareModels({ name: 'teacher', model: teacher }, [{ name: 'student', model: m }], t.ids, ctx)[1]!);
  return { ppl: rows.map((r) => r.perplexity), kl: rows.map((r) => r.kl) };
}
const byFingerprint = new Map<string, Distilled>();

/** Distil the converted student `r` (cell directory `dir`) and measure it on every text. A conversion identical to an
 *  earlier cell's reuses its result; a cell distilled by an earlier run (its bench.json) is read back from its
 *  directory and measured on the texts of this run. */
function distilled(r: ConvertResult, opts: ReturnType<typeof withConvertDefaults>, dir: string): Distilled & { reused: string | null } {
  const fp = fingerprint(r);
  const same = byFingerprint.get(fp);
  if (same) return { ...same, reused: 'an identical conversion' };
  const doneFile = join(dir, 'bench.json');
  if (existsSync(doneFile)) {
    const done = JSON.parse(readFileSync(doneFile, 'utf8')) as { fingerprint: string; seconds: number; tokens: number; seed?: number; sampleTemperature?: number };
    if (done.fingerprint === fp && done.tokens === distillTokens && (done.seed ?? 1) === seed && (done.sampleTemperature ?? 1) === sampleTemperature) {
      const d = { ...done, ...scores(openModel(join(dir, 'distilled'), { backend: values.backend }).model) };
      byFingerprint.set(fp, d);
      return { ...d, reused: doneFile };
    }
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  saveConverted(join(dir, 'student'), opts, r, { source: values.model, copyFiles: tokenizerFiles(values.model, values.tokenizer) });
  const res = runDistill({
    out: join(dir, 'distilled'), teacher: values.model, student: join(dir, 'student'), tokenizer: values.tokenizer,
    samples: samples!, sampleTemperature, settings: distillOverrides!, backend: teacher.be,
  });
  const d: Distilled = { fingerprint: fp, seconds: (Date.now() - t0) / 1000, ...scores(res.student) };
  writeTextAtomic(doneFile, JSON.stringify({ fingerprint: fp, seconds: d.seconds, tokens: distillTokens, seed, sampleTemperature }) + '\n');
  byFingerprint.set(fp, d);
  return { ...d, reused: null };
}

const rows: { recipe: string; free: (Scores | null)[]; dist: (Scores | null)[]; notes: (string | null)[] }[] = [];
for (const recipe of recipes) {
  const row: (typeof rows)[number] = { recipe, free: [], dist: [], notes: [] };
  for (const [ratio, ropeDim] of settings) {
    let opts = withConvertDefaults({ ...(ours(recipe) ? {} : RECIPE_OPTIONS[recipe as keyof typeof RECIPE_OPTIONS]), plan: { kind: 'ratio', ratio }, ropeDim });
    if (recipe === 'transmla') {
      if (values.freqfold !== undefined) opts.freqfold = values.freqfold === 'auto' ? 'auto' : Number(values.freqfold);
      if (values['kv-balance'] !== undefined) opts.kvBalance = values['kv-balance'] as 'energy' | 'transmla';
    }
    let r: ConvertResult;
    let fold = '';
    const t0 = Date.now();
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
      } else if (recipe.startsWith('xkv:')) {
        r = convertSharedLatent(teacher, opened.tokenizer, opts, Number(recipe.slice(4)));
      } else {
        r = convert(teacher, opened.tokenizer, opts);
      }
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      process.stderr.write(`${recipe} ${ratio}×: ${e.message}\n`);
      row.free.push(null);
      row.dist.push(null);
      row.notes.push(null);
      continue;
    }
    const convertSeconds = (Date.now() - t0) / 1000;
    const student = Model.fromWeights(r.config, r.weights, teacher.be);
    const free = scores(student);
    const rank = r.layers.map((l) => l.kvRank ?? 'kept').join(',');
    const dr = r.layers.find((l) => l.ropeDim !== null)?.ropeDim ?? ropeDim;
    const tag = `${recipe} ${r.compression.toFixed(2)}× (${rank}+${dr})${fold}`;
    const said = (v: Scores) => texts.map((t, i) => `${t.name} ${v.ppl[i]!.toFixed(3)} (KL ${v.kl[i]!.toFixed(4)})`).join(', ');
    process.stderr.write(`${tag} training-free: ${said(free)} (converted in ${convertSeconds.toFixed(0)} s)\n`);
    row.free.push(free);
    let d: ReturnType<typeof distilled> | null = null;
    if (work) {
      d = distilled(r, opts, join(work, `${recipe.replace(':', '')}-${ratio}`));
      process.stderr.write(`${tag} distilled: ${said(d)} (${d.reused ? `read back: ${d.reused}` : `${d.seconds.toFixed(0)} s`})\n`);
    }
    row.dist.push(d ? { ppl: d.ppl, kl: d.kl } : null);
    // The plan where the row chooses it (the others' r_kv + d_r follow from the ratio and the rope dim given).
    const ranks = r.layers.flatMap((l) => (l.kvRank === null ? [] : [l.kvRank]));
    const kept = r.layers.flatMap((l, i) => (l.kvRank === null ? [i] : []));
    row.notes.push(recipe === 'search' ? `d_r ${dr}, r ${Math.min(...ranks)}–${Math.max(...ranks)}` : kept.length > 0 ? `layer ${kept.join(', ')} kept, r ${ranks[0]} + ${dr}` : null);
    if (values.json) {
      process.stdout.write(JSON.stringify({
        recipe, ratio: r.compression, kv_rank: rank, rope_dim: dr, freqfold: opts.freqfold ?? 1, texts: texts.map((t) => t.name), ppl: free.ppl, kl: free.kl,
        ...(d ? { distill_tokens: distillTokens, distilled_ppl: d.ppl, distilled_kl: d.kl } : {}),
      }) + '\n');
    }
  }
  rows.push(row);
}
if (work && values.work === undefined) rmSync(work, { recursive: true, force: true });

if (!values.json) {
  // Two tables, one column per ratio; a cell is 'training-free → distilled'. Perplexity: one value per text; mean KL
  // to the teacher: the mean over the texts. Bold: the best of each (perplexity by the first text). A searched or
  // hybrid plan in brackets.
  const ppl0 = (v: Scores | null) => v?.ppl[0] ?? Infinity;
  const meanKl = (v: Scores | null) => (v ? v.kl.reduce((a, b) => a + b, 0) / v.kl.length : Infinity);
  const measures = [
    { name: 'perplexity', short: 'perplexity', key: ppl0, fmt: (v: Scores) => v.ppl.map((p) => p.toFixed(2)).join(' / ') },
    { name: `mean KL(teacher ‖ student) per token over the ${texts.length} text(s)`, short: 'KL', key: meanKl, fmt: (v: Scores) => meanKl(v).toFixed(4) },
  ];
  const head = ['recipe', ...settings.map(([x, d]) => `${x}× (d_r ${d})`)];
  const lines = [
    `teacher: ${texts.map((t, i) => `${t.name} ${teacherPpl[i]!.toFixed(2)}`).join(', ')} (windows of ${ctx}); texts: ${texts.map((t) => t.name).join(' / ')}`,
  ];
  const oursRows = rows.filter((r) => ours(r.recipe));
  const seedRows = rows.filter((r) => !ours(r.recipe));
  for (const m of measures) {
    const bestOf = (i: number, dist: boolean) => Math.min(...rows.map((r) => m.key((dist ? r.dist : r.free)[i] ?? null)));
    const part = (v: Scores | null, best: number) => (v === null ? '-' : m.key(v) === best ? `**${m.fmt(v)}**` : m.fmt(v));
    lines.push('', `${m.name}${distillTokens === null ? '' : ', training-free → distilled'}:`, '', `| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
    for (const r of rows) {
      lines.push(`| ${[r.recipe, ...settings.map((_, i) => {
        if (!r.free[i]) return '-';
        const c = part(r.free[i]!, bestOf(i, false)) + (distillTokens === null ? '' : ` → ${part(r.dist[i]!, bestOf(i, true))}`);
        return r.notes[i] ? `${c} (${r.notes[i]})` : c;
      })].join(' | ')} |`);
    }
    // Per ratio: ours (best of its rows) against the best seed recipe.
    if (oursRows.length === 0 || seedRows.length === 0) continue;
    lines.push('');
    for (const { i, dist } of settings.flatMap((_, i) => [{ i, dist: false }, ...(distillTokens === null ? [] : [{ i, dist: true }])])) {
      const min = (rs: typeof rows) => Math.min(...rs.map((r) => m.key((dist ? r.dist : r.free)[i] ?? null)));
      const o = min(oursRows);
      const p = min(seedRows);
      if (o === Infinity || p === Infinity) continue;
      lines.push(`${settings[i]![0]}× ${dist ? 'distilled' : 'training-free'} ${m.short}: ours ${o.toFixed(4)} vs best seed recipe ${p.toFixed(4)}: ${o < p ? 'ours wins' : 'A SEED RECIPE WINS'}`);
    }
  }
  if (distillTokens !== null) lines.push('', `distilled: \`mla distill\` defaults (${DISTILL_DEFAULTS.seq} × ${DISTILL_DEFAULTS.batch}, lr ${DISTILL_DEFAULTS.lr}) for ${distillTokens} tokens on the same ${samples!.train.length} teacher samples (temperature ${sampleTemperature})`);
  process.stdout.write(lines.join('\n') + '\n');
}

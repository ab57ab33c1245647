// mla demo [--out DIR] [--tokens N] [--backend B]: the main job on the bundled stories260K in a few minutes:
// convert at 4× and 8× KV compression, distil each briefly from the teacher, compare everything on held-out text and
// the bundled tasks, and write DIR/report.md with its charts.

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commonFlags, numFlag, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, resolveBackend } from '../infer/open.js';
import { Model } from '../model/model.js';
import { convert, type ConvertOptions } from '../convert/convert.js';
import { CONVERSION_RECORD, saveConverted } from '../convert/record.js';
import { UserError } from '../errors.js';
import { Batcher, sampleSequences, tokenizeTexts, readTexts } from '../train/data.js';
import { distill, type DistillSettings } from '../train/distill.js';
import { convertReport } from './convert.js';
import { runCompare } from '../eval/compare-run.js';
import { compareTable } from '../report/report.js';
import { Progress } from './progress.js';

/** The package root (dist/src/cli → ../../..). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUNDLED = {
  model: join(ROOT, 'fixtures', 'stories260K', 'stories260K.bin'),
  tokenizer: join(ROOT, 'fixtures', 'stories260K', 'tok512.bin'),
  heldout: join(ROOT, 'fixtures', 'heldout', 'stories-heldout.txt'),
  tasks: join(ROOT, 'fixtures', 'tasks', 'next-word.jsonl'),
};

export const demoSpec = {
  name: 'demo',
  args: '',
  flags: {
    out: { type: 'string', value: 'DIR', default: 'mla-demo', doc: 'where the models and report.md go (must be new or empty)' },
    tokens: { type: 'string', value: 'N', default: '600000', doc: 'distillation tokens per student' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function demoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, demoSpec);
  if (positionals.length > 0) throw new UserError(`mla demo: unexpected argument '${positionals[0]}'`);
  const out = values.out;
  if (existsSync(out) && readdirSync(out).length > 0) throw new UserError(`--out ${out}: already exists and is not empty (remove it or choose another)`);
  const tokens = numFlag(values.tokens, 'tokens', positiveInt, 'a positive integer');
  mkdirSync(out, { recursive: true });
  const be = resolveBackend(values.backend);
  const log = (s: string) => process.stderr.write(`demo: ${s}\n`);
  log(`backend ${be.name}; teacher ${BUNDLED.model}`);
  const teacher = openModel(BUNDLED.model, { tokenizer: BUNDLED.tokenizer }, be);
  const tok = teacher.tokenizer!;
  const copyTok = [{ from: BUNDLED.tokenizer, name: 'tokenizer.bin' }];

  const seq = 128;
  const bar = new Progress('demo: teacher samples', 1024, 'seq');
  const trainSeqs = sampleSequences(teacher.model, 1024, seq + 1, 1, 64, bar);
  const evalSeqs = tokenizeTexts(readTexts(BUNDLED.heldout), tok, seq + 1);
  const students: { name: string; path: string; model: Model }[] = [];
  const notes: string[] = ['Commands (each step of the demo as a CLI call):', '', '```'];
  for (const [ratio, ropeDim] of [[4, 4], [8, 2]] as const) {
    const opts: ConvertOptions = {
      plan: { kind: 'ratio', ratio }, ropeDim, ropeMethod: 'transmla', basis: 'activation', nopeInit: 'mean-rotation', qRank: null,
      latentNorm: false, keepLayers: [], calib: { samples: 32, length: 256, seed: 1234 },
    };
    log(`converting at ${ratio}× (rope dims ${ropeDim})`);
    const r = convert(teacher.model, tok, opts);
    process.stderr.write(convertReport(r) + '\n');
    const convDir = join(out, `mla-${ratio}x`);
    saveConverted(convDir, opts, r, { source: BUNDLED.model, copyFiles: copyTok });
    students.push({ name: `mla-${ratio}x (converted)`, path: convDir, model: Model.fromWeights(r.config, r.weights, be) });

    const distDir = join(out, `mla-${ratio}x-distilled`);
    mkdirSync(distDir, { recursive: true });
    const batch = 16;
    const settings: DistillSettings = {
      steps: Math.max(1, Math.round(tokens / (batch * seq))), batch, seq, accum: 1, lr: 3e-3, warmup: 10, minLrRatio: 0.1, clip: 1,
      weightDecay: 0, klWeight: 1, ceWeight: 0, temperature: 1, train: 'all', seed: 1, evalEvery: 25, checkpointEvery: 1_000_000,
    };
    const student = Model.fromWeights(r.config, r.weights, be);
    const dbar = new Progress(`demo: distil ${ratio}×`, settings.steps * batch * seq, 'tok');
    const res = distill({
      teacher: teacher.model, student, train: new Batcher(trainSeqs, seq, batch, 1), evalSeqs, settings, outDir: distDir,
      copyFiles: [...copyTok, { from: join(convDir, CONVERSION_RECORD), name: CONVERSION_RECORD }], progress: dbar,
    });
    log(`distilled ${ratio}×: held-out perplexity ${res.ppl.toFixed(3)}`);
    students.push({ name: `mla-${ratio}x (distilled)`, path: distDir, model: res.student });
    notes.push(
      `npx mla convert ${BUNDLED.model} --tokenizer ${BUNDLED.tokenizer} --out ${convDir} --kv-ratio ${ratio} --rope-dim ${ropeDim}`,
      `npx mla distill --teacher ${BUNDLED.model} --tokenizer ${BUNDLED.tokenizer} --student ${convDir} --out ${distDir} --tokens ${tokens} --seq ${seq} --self-generate 1024 --eval-text ${BUNDLED.heldout}`,
    );
  }
  notes.push(`npx mla compare ${BUNDLED.model} --tokenizer ${BUNDLED.tokenizer} ${students.map((s) => s.path).join(' ')} --text ${BUNDLED.heldout} --tasks ${BUNDLED.tasks} --out ${out}`, '```');
  const { rows, report } = runCompare({
    teacher: { name: 'stories260K (teacher, GQA)', path: BUNDLED.model, model: teacher.model }, students, tokenizer: tok,
    text: BUNDLED.heldout, ctx: 256, tasks: BUNDLED.tasks, out, progress: (n) => new Progress('demo: compare', n, 'tok'), title: 'mla-upcycle demo: stories260K → MLA', notes,
  });
  process.stdout.write(compareTable(rows) + `\n\nwrote ${report}\n`);
}

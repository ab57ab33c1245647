// mla compare TEACHER STUDENT... --text FILE [--tasks FILE] [--out DIR] [--ctx N] [--json]:
// one table (KV bytes/token, compression, parameters, perplexity, KL to the teacher, task scores), and with --out a
// report.md with the KV-vs-perplexity chart, distillation curves and per-layer spectra.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { commonFlags, num, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer, resolveBackend } from '../infer/open.js';
import { compareModels, type CompareRow } from '../eval/compare.js';
import { readTaskFile } from '../eval/task-file.js';
import { compareTable, readConversionRecord, writeReport, type ConversionRecord } from '../report/report.js';
import { readText } from './ppl.js';
import { UserError } from '../errors.js';
import { Progress } from './progress.js';
import type { Model } from '../model/model.js';
import type { Tokenizer } from '../io/tokenizer.js';

/** A short display name for a model path. */
export function modelName(path: string): string {
  return basename(resolve(path)).replace(/\.bin$/, '');
}

/** Distillation log of a run directory (eval lines only). */
export function readCurve(dir: string): { tokens: number; eval_ppl?: number }[] | null {
  const f = join(dir, 'log.jsonl');
  if (!existsSync(f)) return null;
  return readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tokens: number; eval_ppl?: number }).filter((l) => l.eval_ppl !== undefined);
}

export interface CompareJob {
  teacher: { name: string; path: string; model: Model };
  students: { name: string; path: string; model: Model }[];
  tokenizer: Tokenizer;
  textFile: string;
  ctx: number;
  tasksFile?: string;
  out?: string;
  title?: string;
  notes?: string[];
}

/** Measure and (with out) write the report; returns the rows. */
export function runCompare(job: CompareJob): { rows: CompareRow[]; report: string | null } {
  const ids = job.tokenizer.encode(readText(job.textFile), true);
  const tasks = job.tasksFile ? readTaskFile(job.tasksFile) : undefined;
  const bar = new Progress('compare', ids.length, 'tok');
  const rows = compareModels(job.teacher, job.students, ids, job.ctx, { tokenizer: job.tokenizer, tasks, progress: bar });
  if (!job.out) return { rows, report: null };
  const conversions = new Map<string, ConversionRecord>();
  const curves = new Map<string, { tokens: number; eval_ppl?: number }[]>();
  for (const s of job.students) {
    const rec = existsSync(s.path) ? readConversionRecord(s.path) : null;
    if (rec && !existsSync(join(s.path, 'log.jsonl'))) conversions.set(s.name, rec);
    const c = readCurve(s.path);
    if (c && c.length > 1) curves.set(s.name, c);
  }
  const report = writeReport(job.out, {
    title: job.title ?? 'mla-upcycle comparison', rows, conversions, curves, textFile: job.textFile,
    notes: job.notes,
  });
  return { rows, report };
}

export const compareSpec = {
  name: 'compare',
  args: 'TEACHER STUDENT...',
  flags: {
    text: { type: 'string', value: 'FILE', doc: 'held-out text for perplexity and KL to the teacher (required)' },
    tasks: { type: 'string', value: 'FILE.jsonl', doc: 'multiple-choice tasks to score as well' },
    out: { type: 'string', value: 'DIR', doc: 'write DIR/report.md with its charts' },
    ctx: { type: 'string', value: 'N', defaultText: "min(256, the teacher's context)", doc: 'perplexity window length in tokens' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function compareCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, compareSpec);
  if (positionals.length < 2) throw new UserError('mla compare: give TEACHER and at least one STUDENT');
  if (!values.text) throw new UserError('mla compare: --text FILE is required');
  const be = resolveBackend(values.backend);
  const [teacherPath, ...studentPaths] = positionals as [string, ...string[]];
  const t = openModel(teacherPath, { tokenizer: values.tokenizer }, be);
  const tokenizer = requireTokenizer(t);
  const ctx = num(values.ctx, 'ctx', Math.min(256, t.model.config.maxPositions), positiveInt, 'a positive integer');
  const students = studentPaths.map((p) => {
    const s = openModel(p, {}, be);
    if (s.model.config.vocabSize !== t.model.config.vocabSize) throw new UserError(`${p}: vocabulary ${s.model.config.vocabSize} ≠ the teacher's ${t.model.config.vocabSize}`);
    return { name: modelName(p), path: p, model: s.model };
  });
  const { rows, report } = runCompare({
    teacher: { name: modelName(teacherPath), path: teacherPath, model: t.model }, students, tokenizer, textFile: values.text, ctx,
    tasksFile: values.tasks, out: values.out,
  });
  if (values.json) process.stdout.write(JSON.stringify({ rows, report }, null, 2) + '\n');
  else process.stdout.write(compareTable(rows) + '\n' + (report ? `wrote ${report}\n` : ''));
}

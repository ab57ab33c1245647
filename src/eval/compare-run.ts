// The comparison job (library entry point of `mla compare` and the demo's last step): measure a teacher and its
// students on the same held-out text (and tasks), and optionally write report.md with its charts, taking each
// student's conversion record and distillation curve from its directory.

import { existsSync, statSync } from 'node:fs';
import { readLog } from '../io/run-files.js';
import { join } from 'node:path';
import type { Model } from '../model/model.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { writeReport, type CompareRow, type ConversionRecord } from '../report/report.js';
import { readConversionRecord } from '../io/run-files.js';
import type { ProgressSink } from '../progress.js';
import { compareModels } from './compare.js';
import { readTaskFile } from './task-file.js';
import { readText } from './text.js';

/** A model in a comparison: its display name, its directory (for the records beside it) and the loaded model. */
export interface NamedModel {
  name: string;
  path: string;
  model: Model;
}

export interface CompareJob {
  teacher: NamedModel;
  students: NamedModel[];
  tokenizer: Tokenizer;
  /** Held-out text file: perplexity and KL to the teacher over windows of `ctx` tokens. */
  text: string;
  ctx: number;
  /** Multiple-choice task file (JSONL, eval/task-file.ts) scored as well. */
  tasks?: string;
  /** Directory for report.md and its charts (none written when absent). */
  out?: string;
  title?: string;
  notes?: string[];
  /** Progress over the held-out tokens (the total is known once the text is tokenized). */
  progress?: (totalTokens: number) => ProgressSink;
}

/** Held-out evaluations of a distillation run directory (its log.jsonl), or null when it has none. */
export function readCurve(dir: string): { tokens: number; eval_ppl?: number }[] | null {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return null;
  return readLog(dir)?.filter((l) => l.eval_ppl !== undefined) ?? null;
}

/** Measure every model (rows: teacher first) and, with `out`, write the report; returns the rows and the report path. */
export function runCompare(job: CompareJob): { rows: CompareRow[]; report: string | null } {
  const ids = job.tokenizer.encode(readText(job.text, 'text'), true);
  const tasks = job.tasks ? readTaskFile(job.tasks) : undefined;
  const rows = compareModels(job.teacher, job.students, ids, job.ctx, { tokenizer: job.tokenizer, tasks, progress: job.progress?.(ids.length) });
  if (!job.out) return { rows, report: null };
  const conversions = new Map<string, ConversionRecord>();
  const curves = new Map<string, { tokens: number; eval_ppl?: number }[]>();
  for (const s of job.students) {
    const rec = existsSync(s.path) ? readConversionRecord(s.path) : null;
    // A distilled directory carries its student's conversion record; its spectra belong to the converted row.
    if (rec && !existsSync(join(s.path, 'log.jsonl'))) conversions.set(s.name, rec);
    const c = readCurve(s.path);
    if (c && c.length > 1) curves.set(s.name, c);
  }
  const report = writeReport(job.out, {
    title: job.title ?? 'mla-upcycle comparison', rows, conversions, curves, textFile: job.text, notes: job.notes,
  });
  return { rows, report };
}

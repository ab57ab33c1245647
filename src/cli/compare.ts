// mla compare TEACHER STUDENT... --text FILE [--tasks FILE] [--out DIR] [--ctx N] [--json]:
// one table (KV bytes/token, compression, parameters, perplexity, KL to the teacher, task scores), and with --out a
// report.md with the KV-vs-perplexity chart, distillation curves and per-layer spectra.

import { basename, resolve } from 'node:path';
import { cacheDtypeFlag, cacheDtypeOf, commonFlags, ctxFlag, parse, type CommandSpec } from './args.js';
import { checkOutput } from '../io/output.js';
import { readText } from '../eval/text.js';
import { readTaskFile } from '../eval/task-file.js';
import { openModel, requireTokenizer, resolveBackend } from '../infer/open.js';
import { runCompare } from '../eval/compare-run.js';
import { belowTeacherNotes, compareTable } from '../report/report.js';
import { UserError } from '../errors.js';
import { Progress } from './progress.js';

/** A short display name for a model path. */
export function modelName(path: string): string {
  return basename(resolve(path)).replace(/\.bin$/, '');
}

export const compareSpec = {
  name: 'compare',
  args: 'TEACHER STUDENT...',
  flags: {
    text: { type: 'string', value: 'FILE', doc: 'held-out text for perplexity and KL to the teacher (required)' },
    tasks: { type: 'string', value: 'FILE.jsonl', doc: 'multiple-choice tasks to score as well' },
    out: { type: 'string', value: 'DIR', doc: 'write DIR/report.md with its charts' },
    ctx: { type: 'string', value: 'N', defaultText: "min(256, the teacher's context)", doc: 'perplexity window length in tokens' },
    ...cacheDtypeFlag,
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function compareCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, compareSpec);
  if (positionals.length < 2) throw new UserError('mla compare: give TEACHER and at least one STUDENT');
  if (!values.text) throw new UserError('mla compare: --text FILE is required');
  const be = resolveBackend(values.backend);
  const cacheDtype = cacheDtypeOf(values['cache-dtype']);
  const [teacherPath, ...studentPaths] = positionals as [string, ...string[]];
  // Cheap checks first: the text and task files are read (and validated) before any model is loaded.
  readText(values.text, 'text');
  if (values.tasks) readTaskFile(values.tasks);
  if (values.out) checkOutput({ flag: '--out', out: values.out, inputs: [...positionals, values.text, values.tasks, values.tokenizer], kind: 'dir', overwrite: true, merge: true });
  const t = openModel(teacherPath, { tokenizer: values.tokenizer }, be);
  const tokenizer = requireTokenizer(t);
  const students = studentPaths.map((p) => {
    const s = openModel(p, {}, be);
    if (s.model.config.vocabSize !== t.model.config.vocabSize) throw new UserError(`${p}: vocabulary ${s.model.config.vocabSize} ≠ the teacher's ${t.model.config.vocabSize}`);
    return { name: modelName(p), path: p, model: s.model };
  });
  // Windows must fit every model scored: the smallest context bounds --ctx.
  const all = [{ path: teacherPath, model: t.model }, ...students];
  const smallest = all.reduce((a, b) => (b.model.config.maxPositions < a.model.config.maxPositions ? b : a));
  const ctx = ctxFlag(values.ctx, smallest.model.config.maxPositions, smallest.path);
  const { rows, report } = runCompare({
    teacher: { name: modelName(teacherPath), path: teacherPath, model: t.model }, students, tokenizer, text: values.text, ctx,
    tasks: values.tasks, out: values.out, cacheDtype, progress: (n) => new Progress('compare', n, 'tok'),
  });
  for (const n of belowTeacherNotes(rows)) process.stderr.write(`note: ${n}\n`);
  if (values.json) process.stdout.write(JSON.stringify({ rows, report }, null, 2) + '\n');
  else process.stdout.write(compareTable(rows) + '\n' + (report ? `wrote ${report}\n` : ''));
}

// mla eval MODEL --tasks FILE.jsonl[,FILE2.jsonl] [--batch N] [--limit N] [--json]: zero-shot multiple choice
// (acc, acc_norm with standard errors), lm-evaluation-harness conventions. Task file format: src/eval/task-file.ts.
// --json prints one JSON line per task file.

import { basename } from 'node:path';
import { commonFlags, num, numFlag, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer } from '../infer/open.js';
import { readTaskFile } from '../eval/task-file.js';
import { evaluateTasks } from '../eval/tasks.js';
import { Progress } from './progress.js';
import { table } from '../report/table.js';
import { UserError } from '../errors.js';

export const evalSpec = {
  name: 'eval',
  args: 'MODEL',
  flags: {
    tasks: { type: 'string', value: 'FILE.jsonl[,FILE2]', multiple: true, doc: 'task files (required; format: src/eval/task-file.ts)' },
    batch: { type: 'string', value: 'B', default: '8', doc: 'sequences per forward pass' },
    limit: { type: 'string', value: 'N', defaultText: 'all', doc: 'score only the first N items of each task file' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function evalCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, evalSpec);
  const path = onePositional(positionals, 'MODEL', 'eval');
  const files = (values.tasks ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');
  if (files.length === 0) throw new UserError('mla eval: --tasks FILE.jsonl is required');
  const batch = numFlag(values.batch, 'batch', positiveInt, 'a positive integer');
  const limit = values.limit === undefined ? undefined : num(values.limit, 'limit', 0, positiveInt, 'a positive integer');
  // Validate every task file before loading the model.
  const tasks = files.map((file) => ({ file, name: basename(file).replace(/\.jsonl?$/, ''), items: readTaskFile(file) }));

  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const tokenizer = requireTokenizer(opened);
  const rows: (string | number)[][] = [];
  for (const t of tasks) {
    const n = Math.min(t.items.length, limit ?? Infinity);
    const seqs = t.items.slice(0, n).reduce((s, it) => s + it.choices.length, 0);
    const r = evaluateTasks(opened.model, tokenizer, t.items, { batch, limit, progress: new Progress(`eval ${t.name}`, seqs, 'seq') });
    if (values.json) {
      const { acc, acc_stderr, acc_norm, acc_norm_stderr } = r;
      process.stdout.write(JSON.stringify({ task: t.name, file: t.file, n: r.n, acc, acc_stderr, acc_norm, acc_norm_stderr }) + '\n');
    } else {
      rows.push([t.name, r.n, r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr]);
    }
  }
  if (!values.json) process.stdout.write(table(['task', 'n', 'acc', '± stderr', 'acc_norm', '± stderr'], rows) + '\n');
}

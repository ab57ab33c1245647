// mla ppl MODEL --text FILE [--ctx N] [--json]: perplexity over non-overlapping windows of N tokens.

import { readUtf8File } from '../io/text.js';
import { commonOptions, ctxFlag, num, onePositional, parse, positiveInt } from './args.js';
import { openModel, requireTokenizer } from '../infer/open.js';
import { perplexity } from '../eval/perplexity.js';
import { windows } from '../eval/perplexity.js';
import { Progress } from './progress.js';
import { UserError } from '../errors.js';

/** Read a text file for evaluation, with a clear error. */
export function readText(file: string): string {
  return readUtf8File(file, `--text ${file}`);
}

export async function pplCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    { ...commonOptions, text: { type: 'string' }, ctx: { type: 'string' }, batch: { type: 'string' } },
    'ppl',
  );
  const path = onePositional(positionals, 'MODEL', 'ppl');
  if (!values.text) throw new UserError('mla ppl: --text FILE is required');
  const batch = num(values.batch, 'batch', 8, positiveInt, 'a positive integer');
  const text = readText(values.text);
  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const ctx = ctxFlag(values.ctx, opened.model.config.maxPositions, path);
  const ids = requireTokenizer(opened).encode(text, true);
  if (windows(ids, ctx).length === 0) throw new UserError(`--text ${values.text}: fewer than 2 tokens`);
  const bar = new Progress('ppl', ids.length, 'tok');
  const r = perplexity(opened.model, ids, ctx, batch, bar);
  if (values.json) process.stdout.write(JSON.stringify({ perplexity: r.perplexity, tokens: r.tokens }) + '\n');
  else process.stdout.write(`perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens (windows of ${ctx})\n`);
}

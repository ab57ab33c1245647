// mla ppl MODEL --text FILE [--ctx N] [--json]: perplexity over non-overlapping windows of N tokens.

import { commonFlags, num, numFlag, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer } from '../infer/open.js';
import { perplexity } from '../eval/perplexity.js';
import { windows } from '../eval/perplexity.js';
import { readText } from '../eval/text.js';
import { Progress } from './progress.js';
import { UserError } from '../errors.js';

export const pplSpec = {
  name: 'ppl',
  args: 'MODEL',
  flags: {
    text: { type: 'string', value: 'FILE', doc: 'text to score (required)' },
    ctx: { type: 'string', value: 'N', defaultText: "min(256, the model's context)", doc: 'window length in tokens (non-overlapping windows; each scores its tokens 2..N)' },
    batch: { type: 'string', value: 'B', default: '8', doc: 'windows per forward pass' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function pplCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, pplSpec);
  const path = onePositional(positionals, 'MODEL', 'ppl');
  if (!values.text) throw new UserError('mla ppl: --text FILE is required');
  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const ctx = num(values.ctx, 'ctx', Math.min(256, opened.model.config.maxPositions), positiveInt, 'a positive integer');
  if (ctx < 2 || ctx > opened.model.config.maxPositions) {
    throw new UserError(`--ctx: expected 2..${opened.model.config.maxPositions} (the model's context), got ${ctx}`);
  }
  const batch = numFlag(values.batch, 'batch', positiveInt, 'a positive integer');
  const ids = requireTokenizer(opened).encode(readText(values.text), true);
  if (windows(ids, ctx).length === 0) throw new UserError(`--text ${values.text}: fewer than 2 tokens`);
  const bar = new Progress('ppl', ids.length, 'tok');
  const r = perplexity(opened.model, ids, ctx, batch, bar);
  if (values.json) process.stdout.write(JSON.stringify({ perplexity: r.perplexity, tokens: r.tokens }) + '\n');
  else process.stdout.write(`perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens (windows of ${ctx})\n`);
}

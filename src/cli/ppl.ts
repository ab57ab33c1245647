// mla ppl MODEL --text FILE [--ctx N] [--json]: perplexity over non-overlapping windows of N tokens.

import { commonFlags, ctxFlag, numFlag, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
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
  const batch = numFlag(values.batch, 'batch', positiveInt, 'a positive integer');
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

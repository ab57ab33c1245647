// mla generate MODEL [--prompt TEXT] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]:
// stdout carries the decoded text (prompt + continuation) and nothing else.

import { commonFlags, nonNegativeInt, numFlag, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer } from '../infer/open.js';
import { generate } from '../model/generate.js';
import { Progress } from './progress.js';
import { UserError } from '../errors.js';

export const generateSpec = {
  name: 'generate',
  args: 'MODEL',
  flags: {
    prompt: { type: 'string', value: 'TEXT', default: '', doc: 'text to continue (encoded with a leading BOS)' },
    'max-tokens': { type: 'string', value: 'N', default: '256', doc: 'tokens to generate at most (stops early at EOS/BOS)' },
    temperature: { type: 'string', value: 'T', default: '1', doc: 'sampling temperature; 0 is greedy' },
    'top-p': { type: 'string', value: 'P', default: '0.9', doc: 'nucleus sampling: keep the smallest set of tokens with probability ≥ P' },
    seed: { type: 'string', value: 'S', default: '42', doc: 'sampling seed' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, generateSpec);
  const path = onePositional(positionals, 'MODEL', 'generate');
  const maxTokens = numFlag(values['max-tokens'], 'max-tokens', positiveInt, 'a positive integer');
  const temperature = numFlag(values.temperature, 'temperature', (n) => n >= 0, 'a number ≥ 0');
  const topP = numFlag(values['top-p'], 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const seed = numFlag(values.seed, 'seed', nonNegativeInt, 'a non-negative integer');
  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const tok = requireTokenizer(opened);
  const prompt = tok.encode(values.prompt ?? '', true);
  if (prompt.length === 0) {
    throw new UserError(`--prompt: required for this model (its tokenizer has no BOS token to start an empty prompt from)`);
  }
  const context = opened.model.config.maxPositions;
  if (prompt.length >= context) {
    throw new UserError(`--prompt: ${prompt.length} tokens leave no room in the model's context of ${context} tokens`);
  }
  const stopIds = [tok.eosId, tok.bosId].filter((x): x is number => x !== null);
  const bar = new Progress('generate', maxTokens, 'tok');
  const ids = generate(opened.model, prompt, { maxTokens, temperature, topP, seed, stopIds, onToken: () => bar.tick() });
  bar.end();
  // The cache holds the model's context and no more: say so when that, not --max-tokens or EOS, ended the text.
  if (ids.length < maxTokens && prompt.length + ids.length >= context) {
    process.stderr.write(`note: stopped at the model's context of ${context} tokens (max_position_embeddings), before --max-tokens ${maxTokens}\n`);
  }
  process.stdout.write(tok.decode([...prompt, ...ids]));
  if (values.json) process.stdout.write('\n');
}

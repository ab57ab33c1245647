// mla generate MODEL [--prompt TEXT] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]:
// stdout carries the decoded text (prompt + continuation) and nothing else.

import { commonOptions, num, nonNegativeInt, onePositional, parse, positiveInt } from './args.js';
import { openModel, requireTokenizer } from '../infer/open.js';
import { generate } from '../model/generate.js';
import { Progress } from './progress.js';

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      ...commonOptions,
      prompt: { type: 'string', default: '' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
    },
    'generate',
  );
  const path = onePositional(positionals, 'MODEL', 'generate');
  const maxTokens = num(values['max-tokens'], 'max-tokens', 256, positiveInt, 'a positive integer');
  const temperature = num(values.temperature, 'temperature', 1, (n) => n >= 0, 'a number ≥ 0');
  const topP = num(values['top-p'], 'top-p', 0.9, (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const seed = num(values.seed, 'seed', 42, nonNegativeInt, 'a non-negative integer');
  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const tok = requireTokenizer(opened);
  const prompt = tok.encode(values.prompt ?? '', true);
  const stopIds = [tok.eosId, tok.bosId].filter((x): x is number => x !== null);
  const bar = new Progress('generate', maxTokens, 'tok');
  const ids = generate(opened.model, prompt, { maxTokens, temperature, topP, seed, stopIds, onToken: () => bar.tick() });
  bar.end();
  process.stdout.write(tok.decode([...prompt, ...ids]));
  if (values.json) process.stdout.write('\n');
}

// The built CLI on the bundled model: results on stdout, --json for programs, clear errors without stack traces,
// and KV bytes per token that follow the formulas (2·Hkv·D per GQA layer, r_kv + d_r per MLA layer, 4 bytes each).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { STORIES_BIN, STORIES_TOK, mla, mlaOk, tempDir } from './helpers.js';

test('info --json reports the teacher\'s KV bytes per token from the GQA formula', () => {
  const info = JSON.parse(mlaOk(['info', STORIES_BIN, '--tokenizer', STORIES_TOK, '--json'])) as {
    kv_bytes_per_token: number; parameters: number; layers: { kv_values_per_token: number }[];
  };
  assert.equal(info.kv_bytes_per_token, 5 * 2 * 4 * 8 * 4);
  assert.equal(info.parameters, 260032);
  assert.ok(info.layers.every((l) => l.kv_values_per_token === 64));
});

test('convert → info/ppl/generate on the output directory; KV bytes follow r_kv + d_r per layer', () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'mla');
    const conv = JSON.parse(mlaOk([
      'convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', out, '--energy', '0.9', '--rope-dim', '4', '--keep-layers', '2',
      '--calib-samples', '2', '--calib-len', '32', '--json',
    ])) as { layers: { kind: string; kvRank: number | null; ropeDim: number | null }[]; kv_bytes_per_token: number };
    const expected = conv.layers.reduce((s, l) => s + (l.kind === 'mla' ? (l.kvRank! + l.ropeDim!) * 4 : 64 * 4), 0);
    assert.equal(conv.kv_bytes_per_token, expected);
    assert.ok(conv.layers.every((l) => l.kind === 'gqa' || l.kvRank! % 8 === 0), 'energy ranks are multiples of 8');
    assert.equal(conv.layers[2]!.kind, 'gqa');
    const info = JSON.parse(mlaOk(['info', out, '--json'])) as { kv_bytes_per_token: number; architecture: string };
    assert.equal(info.kv_bytes_per_token, expected);
    assert.equal(info.architecture, 'deepseek_v3');
    const text = join(dir, 't.txt');
    writeFileSync(text, 'Once upon a time, there was a little dog. The dog liked to run in the park with his friend.');
    const ppl = JSON.parse(mlaOk(['ppl', out, '--text', text, '--json'])) as { perplexity: number; tokens: number };
    assert.ok(Number.isFinite(ppl.perplexity) && ppl.tokens > 10);
    assert.ok(mlaOk(['generate', out, '--max-tokens', '8', '--seed', '3']).length > 0);
  } finally {
    cleanup();
  }
});

test('bad input: clear one-line errors, exit status 1, no partial output', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [string[], RegExp][] = [
      [['generate', STORIES_BIN], /no tokenizer/],
      [['ppl', STORIES_BIN, '--tokenizer', STORIES_TOK], /--text FILE is required/],
      [['generate', STORIES_BIN, '--tokenizer', STORIES_TOK, '--temperature', 'hot'], /--temperature: expected a number ≥ 0, got 'hot'/],
      [['convert', STORIES_BIN, '--out', join(dir, 'x'), '--kv-ratio', '40'], /--kv-ratio 40: leaves/],
      [['convert', STORIES_BIN, '--out', join(dir, 'y'), '--rope-method', 'nope'], /--rope-method: expected ecomla, mha2mla, transmla/],
      [['info', join(dir, 'missing')], /no such file or directory/],
      [['info', STORIES_BIN, '--bogus'], /Unknown option '--bogus'/],
      // Library errors name option fields; the CLI names the flag that set each one.
      [['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', STORIES_BIN, '--out', join(dir, 'd'), '--eval-text', join(dir, 'missing.txt')],
        /^error: --eval-text \S+missing\.txt: no such file or directory\n$/],
      [['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', STORIES_BIN, '--out', join(dir, 'd'), '--lr=-1'], /^error: --lr: expected a positive number, got '-1'\n$/],
      [['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', join(dir, 'z'), '--keep-layers', '9'], /^error: --keep-layers: layer 9 outside 0\.\.4\n$/],
    ];
    for (const [args, re] of cases) {
      const r = mla(args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '');
    }
    assert.ok(['x', 'y', 'z', 'd'].every((f) => !existsSync(join(dir, f))), 'no partial output');
  } finally {
    cleanup();
  }
});

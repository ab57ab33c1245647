// End-to-end: greedy decoding of the real stories260K model reproduces llama2.c's golden text byte for byte,
// on every backend, through the CLI and through the library.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { STORIES_BIN, STORIES_GOLDEN, STORIES_TOK, mla } from './helpers.js';
import { availableBackends } from '../src/backends/index.js';

const golden = readFileSync(STORIES_GOLDEN, 'utf8');

for (const backend of availableBackends()) {
  test(`stories260K greedy 200 tokens matches the golden text (${backend})`, () => {
    const r = mla(['generate', STORIES_BIN, '--tokenizer', STORIES_TOK, '--max-tokens', '200', '--temperature', '0', '--backend', backend]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, golden);
  });
}

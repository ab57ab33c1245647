// `mla info` reads headers only: garbage weight data after a valid safetensors header still gives the full table,
// and the numbers equal those of a full load (parameters, bytes in the stored dtype, KV bytes per token).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { mla, mlaOk, STORIES_BIN, STORIES_TOK, tempDir } from './helpers.js';
import { randomLlama } from './models.js';
import { saveHfModel } from '../src/io/hf.js';
import { inspectModel, loadModel } from '../src/io/load.js';
import { kvBytesPerToken } from '../src/model/config.js';
import { parameterCount } from '../src/model/weights.js';

interface Info { parameters: number; weight_bytes: number; weight_dtypes: Record<string, number>; kv_bytes_per_token: number; layers: unknown[] }

test('info on stories260K: header numbers equal a full load (260,032 f32 parameters)', () => {
  const full = loadModel(STORIES_BIN).config;
  const info = JSON.parse(mlaOk(['info', STORIES_BIN, '--tokenizer', STORIES_TOK, '--json'])) as Info;
  assert.equal(info.parameters, parameterCount(full));
  assert.equal(info.parameters, 260032);
  assert.equal(info.weight_bytes, 4 * 260032);
  assert.deepEqual(info.weight_dtypes, { F32: 260032 });
  assert.equal(info.kv_bytes_per_token, kvBytesPerToken(full, 4));
});

test('info reads no weight data: a bf16 HF directory whose data section is garbage still prints the table', () => {
  const { dir, cleanup } = tempDir();
  try {
    const m = randomLlama(5, true);
    const hf = join(dir, 'hf');
    saveHfModel(hf, m.config, m.weights(), 'BF16');
    const before = JSON.parse(mlaOk(['info', hf, '--json'])) as Info;
    const full = loadModel(hf).config;
    assert.equal(before.parameters, parameterCount(full));
    assert.equal(before.weight_bytes, 2 * parameterCount(full));
    assert.deepEqual(before.weight_dtypes, { BF16: parameterCount(full) });
    assert.equal(before.kv_bytes_per_token, kvBytesPerToken(full, 4));

    // Overwrite every data byte with 0xFF (bf16 NaN): any read of a weight fails the finite check.
    const file = join(hf, 'model.safetensors');
    const buf = readFileSync(file);
    const dataStart = 8 + Number(buf.readBigUInt64LE(0));
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(buf.length - dataStart, 0xff), 0, buf.length - dataStart, dataStart);
    closeSync(fd);
    assert.throws(() => loadModel(hf), /NaN|not finite|non-finite/i);

    const after = JSON.parse(mlaOk(['info', hf, '--json'])) as Info;
    assert.deepEqual(after, before);
    const text = mla(['info', hf]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /layer\s+.*attention/);
    assert.match(text.stdout, /weights\s+[\d,]+ bytes \(BF16 [\d,]+\)/);
    assert.equal(inspectModel(hf).weights.parameters, parameterCount(full));
  } finally {
    cleanup();
  }
});

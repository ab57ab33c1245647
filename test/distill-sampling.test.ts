// The teacher samples' rule (--sample-temperature, --sample-top-p): sampleSequences honours it (a vanishing
// temperature or nucleus gives the greedy continuation; the default is plain sampling), and `mla distill` trains on
// samples drawn with it, keeps its held-out samples plain, records it in run.json — on both engines.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { refBackend } from '../src/backends/ref/index.js';
import { loadModel } from '../src/io/load.js';
import { Model } from '../src/model/model.js';
import { generate, PLAIN_SAMPLING, sampleSequences } from '../src/model/generate.js';
import { findTorchPython } from '../src/train/torch-engine.js';
import { STORIES_BIN, STORIES_TOK, mlaOk, tempDir } from './helpers.js';

const teacher = (() => {
  const t = loadModel(STORIES_BIN, { tokenizer: STORIES_TOK });
  return Model.fromWeights(t.config, t.weights, refBackend, t.source);
})();

let torchSkip: string | false = false;
try {
  findTorchPython();
} catch (e) {
  torchSkip = `torch engine case skipped: ${(e as Error).message}`;
}

test('sampleSequences: a vanishing temperature or nucleus gives the greedy continuation; the default rule is plain sampling', () => {
  const len = 12;
  const greedy = [teacher.config.bosTokenId!, ...generate(teacher, [teacher.config.bosTokenId!], { maxTokens: len - 1, temperature: 0, topP: 1, seed: 0 })];
  for (const rule of [{ temperature: 1e-4, topP: 1 }, { temperature: 1, topP: 1e-9 }, { temperature: 0.5, topP: 1e-9 }]) {
    // Odd n and batch: two batches, the second partial.
    const s = sampleSequences(teacher, 5, len, 3, 3, undefined, rule);
    assert.deepEqual(s, Array.from({ length: 5 }, () => greedy), JSON.stringify(rule));
  }
  const plain = sampleSequences(teacher, 4, len, 3, 4);
  assert.deepEqual(sampleSequences(teacher, 4, len, 3, 4, undefined, PLAIN_SAMPLING), plain);
  // A real change of rule changes the samples (same random stream, other tokens).
  assert.notDeepEqual(sampleSequences(teacher, 4, len, 3, 4, undefined, { temperature: 2, topP: 1 }), plain);
  assert.throws(() => sampleSequences(teacher, 1, len, 3, 1, undefined, { temperature: 0, topP: 1 }), /temperature must be > 0/);
});

test('mla distill --sample-temperature/--sample-top-p: trains on samples drawn so, held-out samples plain, recorded (cpu and torch engines)', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--kv-ratio', '4', '--rope-dim', '4', '--calib-samples', '2', '--calib-len', '16']);
    const rule = { temperature: 0.6, topP: 0.8 };
    const args = (out: string) => ['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--out', out, '--steps', '1', '--batch', '2',
      '--seq', '16', '--self-generate', '6', '--sample-temperature', String(rule.temperature), '--sample-top-p', String(rule.topP)];
    const expected = {
      train: sampleSequences(teacher, 6, 17, 1, 64, undefined, rule),
      // DISTILL_DEFAULTS.evalSamples at seed + 1_000_003, plain.
      eval: sampleSequences(teacher, 32, 17, 1_000_004, 64),
    };
    assert.notDeepEqual(expected.train, sampleSequences(teacher, 6, 17, 1, 64), 'the rule changes the training samples');
    const check = (out: string) => {
      const samples = JSON.parse(readFileSync(join(out, 'teacher-samples.json'), 'utf8')) as { train: number[][]; eval: number[][] };
      assert.deepEqual(samples, expected);
      const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as Record<string, unknown>;
      assert.deepEqual([run.selfGenerate, run.sampleTemperature, run.sampleTopP], [6, rule.temperature, rule.topP]);
    };
    await t.test('cpu engine', () => {
      mlaOk([...args(join(dir, 'cpu')), '--backend', 'ref']);
      check(join(dir, 'cpu'));
      // The same rule again on --resume is accepted (a finished run: nothing left to do).
      mlaOk(['distill', '--resume', join(dir, 'cpu'), '--sample-temperature', String(rule.temperature), '--backend', 'ref']);
    });
    // The torch engine draws its samples in Node, with the backend given (ref here, as above).
    await t.test('torch engine', { skip: torchSkip }, () => {
      mlaOk([...args(join(dir, 'torch')), '--engine', 'torch', '--device', 'cpu', '--backend', 'ref']);
      check(join(dir, 'torch'));
    });
  } finally {
    cleanup();
  }
});

// The torch engine's checks (issue 10): Node opens the models from their headers only (a NaN weight is found by the
// Python worker that reads the weights, never by Node), --resume refuses a checkpoint that is not the run's before
// Python starts, and the chunked loss stops on non-finite logits / losses with the cpu engine's messages
// (test/torch_checks.py). Skips, saying why, where no Python with torch is found.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { findTorchPython, resolveTorchOptions, runDistillTorch, torchEnv, type TeacherDevice } from '../src/train/torch-engine.js';
import { OptionError, UserError } from '../src/errors.js';
import { resolveSettings } from '../src/train/run.js';
import { stateJson } from '../src/io/run-files.js';
import { loadModel } from '../src/io/load.js';
import { saveModelDir } from '../src/io/deepseek.js';
import { Model } from '../src/model/model.js';
import { getBackend } from '../src/backends/index.js';
import { convert } from '../src/convert/convert.js';
import { checkDistillPlan } from '../src/train/preflight.js';
import type { ModelConfig } from '../src/model/config.js';

let skip: string | false = false;
try {
  findTorchPython();
} catch (e) {
  skip = `torch engine tests skipped: ${(e as Error).message}`;
  console.log(`# ${skip}`);
}

const TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. ';

/** A weight-basis MLA conversion of stories260K (no calibration: fast), saved in `dir`. */
function mlaStudent(dir: string): string {
  const t = loadModel(STORIES_BIN);
  const r = convert(Model.fromWeights(t.config, t.weights, getBackend('ref')), null, {
    plan: { kind: 'ratio', ratio: 4 }, ropeDim: 4, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: false, nopeInit: 'identity',
    keepLayers: [], calib: { samples: 2, length: 24, seed: 7 },
  });
  const p = join(dir, 'student');
  saveModelDir(p, r.config, r.weights);
  return p;
}

/** The one `error:` line of a failed CLI run (exit 1, no stack trace). */
function oneError(r: { stderr: string; status: number }): string {
  assert.equal(r.status, 1, r.stderr);
  const errs = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
  assert.equal(errs.length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at .*\.js:\d+/, 'no stack trace');
  return errs[0]!;
}

test('torch engine: non-finite logits and losses stop the chunked loss with the cpu engine\'s messages', { skip }, () => {
  const r = spawnSync(findTorchPython().python, [join(ROOT, 'test', 'torch_checks.py')], { env: torchEnv(), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.deepEqual(r.stdout.trim().split('\n'), ['ok teacher NaN', 'ok student +Inf', 'ok KL +Inf']);
});

test('torch engine: Node reads no weight (a NaN in the teacher is found by the Python worker)', { skip }, () => {
  const { dir, cleanup } = tempDir();
  try {
    // stories260K with one NaN in layer 2's wq, row 1, column 36 (llama2.c layout: 28-byte header, then f32 blocks).
    const bytes = Buffer.from(readFileSync(STORIES_BIN));
    const [C, , L, , , V] = Array.from(new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 28)));
    const wq = Math.abs(V!) * C! + L! * C!;
    bytes.writeFloatLE(NaN, 28 + 4 * (wq + 2 * C! * C! + C! + 36));
    const bad = join(dir, 'nan-wq.bin');
    writeFileSync(bad, bytes);
    const text = join(dir, 't.txt');
    writeFileSync(text, TEXT.repeat(3));
    const out = join(dir, 'run');
    const r = mla([
      'distill', '--teacher', bad, '--tokenizer', STORIES_TOK, '--student', mlaStudent(dir), '--out', out, '--data', text, '--eval-text', text,
      '--steps', '1', '--batch', '1', '--seq', '8', '--engine', 'torch', '--device', 'cpu',
    ]);
    // Node's own loader would have refused the file first, without the engine's prefix.
    assert.match(oneError(r), /^error: --engine torch: .*nan-wq\.bin: tensor model\.layers\.2\.self_attn\.q_proj\.weight \(llama2\.c wq of layer 2\): NaN at element \[1, 36\] .*weights must be finite/);
    assert.ok(!existsSync(out), 'a run that failed before its first checkpoint leaves nothing');
  } finally {
    cleanup();
  }
});

test('torch engine: --resume refuses a checkpoint whose settings are not the run\'s, before Python starts', { skip }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'run');
    const text = join(dir, 't.txt');
    writeFileSync(text, TEXT.repeat(3));
    const settings = resolveSettings({ steps: 4, batch: 2, seq: 8 });
    mkdirSync(join(out, 'checkpoint'), { recursive: true });
    writeFileSync(join(out, 'run.json'), JSON.stringify({
      teacher: STORIES_BIN, student: STORIES_BIN, tokenizer: STORIES_TOK, data: text, evalText: text, settings,
      torch: { device: 'cpu', dtype: 'f32', nproc: 1, teacherDevice: 'same' },
    }));
    writeFileSync(join(out, 'checkpoint', 'state.json'), stateJson({ version: 1, step: 2, tokens: 32, settings: { ...settings, seed: 5 } }));
    // In this process (the Python probe of the file's top is reused): the library call `mla distill --resume` makes.
    await assert.rejects(runDistillTorch({ out, resume: true, backend: getBackend('ref') }), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.message, `${join(out, 'checkpoint', 'state.json')}: settings.seed: 5, but ${join(out, 'run.json')} says 1: the checkpoint is not from this run`);
      return true;
    });
    assert.ok(!existsSync(join(out, 'torch')), 'nothing started');
  } finally {
    cleanup();
  }
});

test('torch engine: --teacher-device own-gpu without --device cuda, or an unknown one, is refused before any work', { skip }, () => {
  assert.throws(() => resolveTorchOptions({ device: 'cpu', teacherDevice: 'own-gpu' }), (e: Error) =>
    e instanceof OptionError && e.field === 'teacherDevice' && e.template === '{teacherDevice} own-gpu: needs {device} cuda (two GPUs per process)');
  assert.throws(() => resolveTorchOptions({ device: 'cpu', teacherDevice: 'gpu1' as TeacherDevice }), /'teacherDevice' gpu1: expected same, cpu, own-gpu/);
  assert.equal(resolveTorchOptions({ device: 'cpu' }).teacherDevice, 'same');
});

test('the torch engine\'s chunked loss lifts the cpu engine\'s limit on one micro-batch of logits (a 128K vocabulary at 4 × 2048)', () => {
  // Half-split pairs: a student with a model-directory form (a llama2.c GQA student has none and is refused first).
  const cfg = (vocabSize: number): ModelConfig => ({ ...loadModel(STORIES_BIN).config, ropePairing: 'half', vocabSize, maxPositions: 131072 });
  const s = resolveSettings({ steps: 1, batch: 4, seq: 2048 });
  const paths = { teacher: 't', student: 's' };
  assert.throws(() => checkDistillPlan(cfg(128256), cfg(128256), s, paths), (e: Error) => e instanceof OptionError && e.field === 'batch');
  assert.doesNotThrow(() => checkDistillPlan(cfg(128256), cfg(128256), s, paths, { chunkedLoss: true }));
  // The other checks stay: a vocabulary mismatch is refused either way.
  assert.throws(() => checkDistillPlan(cfg(128256), cfg(128000), s, paths, { chunkedLoss: true }), /vocabulary 128000 ≠ the teacher's 128256/);
});

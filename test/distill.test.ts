// Distillation: a run killed midway and resumed reproduces the uninterrupted loss curve bit for bit; a diverging run
// stops with a clear message and keeps its last good checkpoint; the result is a normal model directory; teacher
// samples drawn once and given to several runs train each exactly as drawing them would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { saveHfModel } from '../src/io/hf.js';
import { getBackend } from '../src/backends/index.js';
import { loadModel } from '../src/io/load.js';
import { Model } from '../src/model/model.js';
import { defaultWarmup, drawTeacherSamples, runDistill } from '../src/train/run.js';
import { readRunRecord } from '../src/io/run-files.js';
import { CLI, STORIES_BIN, STORIES_TOK, mla, mlaOk, tempDir } from './helpers.js';

function losses(dir: string): string[] {
  return readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { step: number; loss?: number; eval_ppl?: number })
    .map((l) => `${l.step}:${l.loss ?? ''}:${l.eval_ppl ?? ''}`);
}

function stepOf(dir: string): number {
  try {
    return (JSON.parse(readFileSync(join(dir, 'checkpoint', 'state.json'), 'utf8')) as { step: number }).step;
  } catch {
    return 0;
  }
}

test('a distillation killed midway and resumed reproduces the uninterrupted run exactly', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--kv-ratio', '4', '--rope-dim', '4', '--calib-samples', '2', '--calib-len', '32']);
    const args = (out: string) => [
      'distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--out', out, '--steps', '60',
      '--batch', '4', '--seq', '32', '--self-generate', '16', '--eval-every', '7', '--checkpoint-every', '3', '--backend', 'ref',
    ];
    mlaOk(args(join(dir, 'a')));
    // Run B: kill it hard once a checkpoint past step 9 exists, then resume.
    const b = join(dir, 'b');
    const child = spawn(process.execPath, [CLI, ...args(b)], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    while (stepOf(b) < 9 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await exited;
    const killedAt = stepOf(b);
    assert.ok(killedAt >= 9 && killedAt < 60, `run killed at step ${killedAt}`);
    mlaOk(['distill', '--resume', b, '--backend', 'ref']);
    assert.deepEqual(losses(b), losses(join(dir, 'a')));
    assert.ok(existsSync(join(b, 'curve.svg')));
    // The run directory is a normal model directory.
    const info = JSON.parse(mlaOk(['info', b, '--json'])) as { architecture: string; kv_bytes_per_token: number };
    assert.equal(info.architecture, 'deepseek_v3');
    assert.equal(info.kv_bytes_per_token, 320);
    const text = mlaOk(['generate', b, '--max-tokens', '20', '--temperature', '0']);
    assert.ok(text.length > 10);
  } finally {
    cleanup();
  }
});

test('a diverging run stops with a clear message and keeps its last good checkpoint', () => {
  const { dir, cleanup } = tempDir();
  try {
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--kv-ratio', '4', '--rope-dim', '4', '--rope-method', 'ecomla', '--basis', 'weight']);
    const out = join(dir, 'run');
    const r = mla([
      'distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--out', out, '--steps', '20',
      '--batch', '2', '--seq', '16', '--self-generate', '4', '--lr', '1e30', '--warmup', '0', '--clip', '0', '--checkpoint-every', '1',
    ]);
    assert.equal(r.status, 1, r.stderr);
    // Where the blow-up shows first (the update's weights, the held-out eval, the next loss) depends on the numbers;
    // the run must stop at a named step and never save a checkpoint it cannot resume from.
    assert.match(r.stderr, /non-finite .*step \d+/);
    // It names the checkpoint it keeps, or says none was written yet (the blow-up can come at step 1).
    assert.match(r.stderr, /last good checkpoint stays in|stopped before the first checkpoint was written/);
    assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('error:')).length, 1);
    // A kept checkpoint loads for --resume: its weights and moments are finite (checked at load).
    if (existsSync(join(out, 'checkpoint', 'model.safetensors'))) assert.doesNotThrow(() => loadCheckpoint(out));
  } finally {
    cleanup();
  }
});

test('a GQA student (no MLA layer) trains, checkpoints and resumes in its own HF layout; an unsavable one is refused up front', () => {
  const { dir, cleanup } = tempDir();
  try {
    // stories260K's vocabulary, a Llama layout with biases (o_proj bias zeros written for transformers).
    const rng = mulberry32(5);
    const cfg: ModelConfig = {
      arch: 'llama', vocabSize: 512, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, rmsNormEps: 1e-5, ropePairing: 'half',
      ropeInvFreq: defaultInvFreq(10000, 8), ropeTheta: 10000, ropeScaling: null, maxPositions: 64, tieEmbeddings: true, bosTokenId: 1, eosTokenId: 2,
      layers: [0, 1].map(() => ({ kind: 'gqa' as const, numKvHeads: 2, headDim: 8, qkvBias: true })),
    };
    const w = new Map(modelTensors(cfg).map((s) => {
      const t = Tensor.zeros(s.shape);
      for (let i = 0; i < t.size; i++) t.data[i] = s.shape.length === 1 && !s.name.endsWith('bias') ? 1 : 0.05 * gaussian(rng);
      return [s.name, t] as [string, Tensor];
    }));
    const student = join(dir, 'student');
    saveHfModel(student, cfg, w);
    const args = ['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--steps', '4', '--batch', '2', '--seq', '16',
      '--self-generate', '4', '--eval-every', '2', '--checkpoint-every', '2', '--backend', 'ref'];
    mlaOk([...args, '--out', join(dir, 'run')]);
    const cp = loadCheckpoint(join(dir, 'run'));
    assert.equal(cp.state.step, 4);
    assert.deepEqual(cp.config.layers, cfg.layers);
    const cfgJson = JSON.parse(readFileSync(join(dir, 'run', 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([cfgJson.model_type, cfgJson.attention_bias], ['llama', true]);
    assert.match(mlaOk(['info', join(dir, 'run'), '--tokenizer', STORIES_TOK]), /gqa/);
    // A GQA student no model directory can describe (llama2.c's adjacent rope pairs in a llama config) is refused
    // before any sampling, naming the student, and leaves no run directory.
    const bad = mla(['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', STORIES_BIN, '--out', join(dir, 'bad'), '--steps', '2', '--backend', 'ref']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--student .*stories260K\.bin: cannot be saved as a model directory .*half-split RoPE/);
    assert.ok(!existsSync(join(dir, 'bad')));
  } finally {
    cleanup();
  }
});

test('a run given teacher samples drawn once (drawTeacherSamples) trains exactly as one that draws them (--self-generate)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--kv-ratio', '4', '--rope-dim', '4', '--rope-method', 'ecomla', '--basis', 'weight']);
    mlaOk(['distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--out', join(dir, 'a'), '--steps', '3', '--batch', '2',
      '--seq', '16', '--self-generate', '4', '--eval-every', '1', '--backend', 'ref']);
    const be = getBackend('ref');
    const t = loadModel(STORIES_BIN, { tokenizer: STORIES_TOK });
    const samples = drawTeacherSamples(Model.fromWeights(t.config, t.weights, be), 4, { seq: 16, seed: 1 });
    const job = { teacher: STORIES_BIN, tokenizer: STORIES_TOK, student, samples, settings: { steps: 3, batch: 2, seq: 16, evalEvery: 1 }, backend: be };
    runDistill({ ...job, out: join(dir, 'b') });
    assert.deepEqual(losses(join(dir, 'b')), losses(join(dir, 'a')));
    assert.equal(readFileSync(join(dir, 'b', 'teacher-samples.json'), 'utf8'), readFileSync(join(dir, 'a', 'teacher-samples.json'), 'utf8'));
    assert.equal(readRunRecord(join(dir, 'b')).selfGenerate, 4);
    // Samples and a sample count (or a corpus) together are refused before anything is written.
    assert.throws(() => runDistill({ ...job, selfGenerate: 4, out: join(dir, 'c') }), /'samples': give 'samples', 'data' or 'selfGenerate', not two of them/);
    assert.ok(!existsSync(join(dir, 'c')));
  } finally {
    cleanup();
  }
});

test('the default warmup is 3 % of the run but never a full-lr first step on a short run', () => {
  // Long runs: 3 % (the default 8M tokens at seq 256 × batch 16 are 1,953 steps → 59).
  assert.equal(defaultWarmup(1953), 59);
  assert.equal(defaultWarmup(667), 20);
  // Short runs: at least min(20, a quarter of the run), so the first step's lr is at most lr/2 from 5 steps on.
  assert.equal(defaultWarmup(32), 8);
  assert.equal(defaultWarmup(8), 2);
  assert.equal(defaultWarmup(100), 20);
  assert.equal(defaultWarmup(1), 1);
  for (let n = 1; n <= 3000; n++) assert.ok(defaultWarmup(n) >= 1 && defaultWarmup(n) <= Math.max(1, Math.ceil(n / 4), Math.round(n * 0.03)));
});

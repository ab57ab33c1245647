// Distillation: a run killed midway and resumed reproduces the uninterrupted loss curve bit for bit; a diverging run
// stops with a clear message and keeps its last good checkpoint; the result is a normal model directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/train/checkpoint.js';
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

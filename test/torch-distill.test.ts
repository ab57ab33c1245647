// The torch engine's distillation job against the cpu engine (f32, CPU): the same loss at every one of 20 steps from
// the same init on the same batches (≤ 1e-4 relative); kill -9 of the Python worker and --resume reproduce the
// uninterrupted log; 2 processes (gloo) give the losses of 1 process at the same global batch.
// Skips, saying why, where no Python with torch is found.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, STORIES_BIN, STORIES_TOK, mla, mlaOk, tempDir } from './helpers.js';
import { findTorchPython } from '../src/train/torch-engine.js';
import { execFileSync } from 'node:child_process';

let skip: string | false = false;
let hasCompile = false;
let torchVersion = '';
try {
  const py = findTorchPython();
  torchVersion = py.torch;
  hasCompile = py.compile;
} catch (e) {
  skip = `torch engine tests skipped: ${(e as Error).message}`;
  console.log(`# ${skip}`);
}

interface Line { step: number; loss?: number; kl?: number; ce?: number; eval_ppl?: number; grad_norm?: number }

function log(dir: string): Line[] {
  return readFileSync(join(dir, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** Every loss / eval value of two logs agree to `tol` relative (same steps, same kinds of line). */
function sameLog(a: Line[], b: Line[], tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: ${a.length} vs ${b.length} log lines`);
  a.forEach((x, i) => {
    const y = b[i]!;
    assert.equal(x.step, y.step, what);
    for (const k of ['loss', 'kl', 'ce', 'eval_ppl'] as const) {
      assert.equal(x[k] === undefined, y[k] === undefined, `${what}: step ${x.step} ${k} present in one log only`);
      if (x[k] !== undefined) assert.ok(rel(x[k]!, y[k]!) <= tol, `${what}: step ${x.step} ${k} ${x[k]} vs ${y[k]} (tolerance ${tol})`);
    }
  });
}

function stepOf(dir: string): number {
  try {
    return (JSON.parse(readFileSync(join(dir, 'checkpoint', 'state.json'), 'utf8')) as { step: number }).step;
  } catch {
    return 0;
  }
}

const runArgs = (student: string, out: string, extra: string[]) => [
  'distill', '--teacher', STORIES_BIN, '--tokenizer', STORIES_TOK, '--student', student, '--out', out, '--batch', '4', '--seq', '24',
  '--self-generate', '12', ...extra,
];

test('torch engine: 20 steps give the cpu engine losses; kill -9 + --resume reproduces the log; 2 processes equal 1', { skip }, async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--kv-ratio', '4', '--rope-dim', '4', '--basis', 'weight', '--rope-method', 'ecomla']);

    await t.test('20 steps: same loss at every step as the cpu engine (accum 2, KL + CE, τ 2)', () => {
      const extra = ['--steps', '20', '--accum', '2', '--ce-weight', '0.5', '--temperature', '2', '--eval-every', '10', '--checkpoint-every', '20'];
      mlaOk(runArgs(student, join(dir, 'cpu'), extra));
      mlaOk(runArgs(student, join(dir, 'torch'), [...extra, '--engine', 'torch', '--device', 'cpu']));
      const a = log(join(dir, 'torch'));
      assert.equal(a.filter((l) => l.loss !== undefined).length, 20);
      sameLog(a, log(join(dir, 'cpu')), 1e-4, 'torch vs cpu');
      // The result is a normal model directory every command reads.
      const info = JSON.parse(mlaOk(['info', join(dir, 'torch'), '--json'])) as { architecture: string };
      assert.equal(info.architecture, 'deepseek_v3');
      assert.match(mlaOk(['generate', join(dir, 'torch'), '--max-tokens', '8', '--temperature', '0']), /\S/);
    });

    await t.test('kill -9 of the Python worker, then --resume: the same log as an uninterrupted run', async () => {
      const extra = ['--steps', '10', '--eval-every', '4', '--checkpoint-every', '2', '--engine', 'torch', '--device', 'cpu'];
      mlaOk(runArgs(student, join(dir, 'a'), extra));
      const b = join(dir, 'b');
      const child = spawn(process.execPath, [CLI, ...runArgs(student, b, extra)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      while (stepOf(b) < 4 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
      const pid = Number(readFileSync(join(b, 'torch', 'worker.pid'), 'utf8'));
      process.kill(pid, 'SIGKILL');
      const code = await exited;
      const killedAt = stepOf(b);
      assert.ok(killedAt >= 4 && killedAt < 10, `worker killed at step ${killedAt}`);
      assert.equal(code, 1, 'the parent reports the dead worker');
      assert.match(stderr, /--engine torch: python exited/);
      const r = mla(['distill', '--resume', b]);
      assert.equal(r.status, 0, r.stderr);
      sameLog(log(b), log(join(dir, 'a')), 0, 'resumed vs uninterrupted');
      assert.ok(existsSync(join(b, 'curve.svg')));
    });

    await t.test('2 processes (gloo, teacher apart) give the losses of 1 process (--compile) at the same global batch', () => {
      const extra = ['--steps', '4', '--eval-every', '2', '--checkpoint-every', '4', '--engine', 'torch', '--device', 'cpu', '--threads', '1'];
      // --compile: on a torch without torch.compile (1.13) one note, then the eager module (exact); on torch ≥ 2 the
      // compiled student, whose fused kernels may round differently (within this tolerance over 4 steps), or, where
      // inductor cannot build its kernels (no C++ toolchain or Python headers), one note and the eager module.
      const r1 = mla(runArgs(student, join(dir, 'p1'), [...extra, '--compile']));
      assert.equal(r1.status, 0, r1.stderr);
      const notes = r1.stderr.split('\n').filter((l) => l.startsWith('note: '));
      if (!hasCompile) assert.deepEqual(notes, ['note: --compile: torch ' + torchVersion + ' has no torch.compile (torch >= 2.0); running eager']);
      else assert.ok(notes.length === 0 || (notes.length === 1 && /^note: --compile: torch\.compile failed \(.*\); running eager$/.test(notes[0]!)), notes.join('\n'));
      // --teacher-device cpu: the teacher's own head copy, its hidden states moved to the student's device (both the
      // CPU here: the code path of a teacher on its own GPU, not its transfer).
      mlaOk(runArgs(student, join(dir, 'p2'), [...extra, '--nproc', '2', '--teacher-device', 'cpu']));
      // 1e-4, the engine tolerance: the two runs sum in another order (gloo's all-reduce of two halves, the
      // teacher's head applied apart), and f32 reordering moved a held-out ppl by 1.6e-5 relative on a loaded box.
      sameLog(log(join(dir, 'p2')), log(join(dir, 'p1')), 1e-4, '2 processes vs 1');
    });
  } finally {
    cleanup();
  }
});

test('torch engine: a missing Python/torch or GPU is one clear error before any work', () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = runArgs(STORIES_BIN, join(dir, 'run'), ['--steps', '1', '--engine', 'torch']);
    const r = mla([...args, '--python', join(dir, 'no-such-python')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--engine torch: no Python with torch found \(tried .*no-such-python\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(!existsSync(join(dir, 'run')), 'no output directory');
    if (!skip) {
      const cuda = JSON.parse(execFileSync(findTorchPython().python, ['-c', 'import torch, json; print(json.dumps(torch.cuda.is_available()))'], { encoding: 'utf8' })) as boolean;
      if (!cuda) {
        const g = mla([...args, '--device', 'cuda']);
        assert.equal(g.status, 1);
        assert.match(g.stderr, /--device cuda: .* torch.cuda.is_available\(\) is false/);
      }
    }
  } finally {
    cleanup();
  }
});

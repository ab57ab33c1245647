// The same distillation job on both engines on the CPU: tokens/s of `mla distill` (cpu engine, our N-API kernels)
// against `mla distill --engine torch --device cpu` (PyTorch eager, f32), with the ratio. Each job: convert the teacher
// (--kv-ratio 4), distil for a few steps with evaluation and checkpoint only at the end, read the training throughput
// from the last step line of log.jsonl (startup, sampling and evaluation excluded). Not a test; never gates on a time.
// Usage: node dist/bench/torch-cpu.js [--quick] [--json] [--threads N]

import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors, parameterCount } from '../src/model/weights.js';
import { saveHfModel } from '../src/io/hf.js';
import { table } from '../src/report/table.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, threads: { type: 'string' } } });
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const STORIES = join(ROOT, 'fixtures', 'stories260K');
const TOK = join(STORIES, 'tok512.bin');

/** A random Llama-shaped model with stories260K's 512-token vocabulary (so its tokenizer serves). */
function llamaShaped(dir: string): { path: string; params: number } {
  const rng = mulberry32(1);
  const config: ModelConfig = {
    arch: 'llama', vocabSize: 512, hiddenSize: 256, intermediateSize: 688, numLayers: 6, numHeads: 8, rmsNormEps: 1e-5,
    ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 32), ropeTheta: 10000, ropeScaling: null, maxPositions: 2048,
    tieEmbeddings: true, bosTokenId: 1, eosTokenId: 2,
    layers: Array.from({ length: 6 }, () => ({ kind: 'gqa' as const, numKvHeads: 2, headDim: 32, qkvBias: false })),
  };
  const w = new Map<string, Tensor>();
  for (const s of modelTensors(config)) {
    const t = Tensor.zeros(s.shape);
    for (let i = 0; i < t.size; i++) t.data[i] = s.shape.length === 1 ? 1 : 0.05 * gaussian(rng);
    w.set(s.name, t);
  }
  const path = join(dir, 'llama-shaped');
  saveHfModel(path, config, w);
  return { path, params: parameterCount(config) };
}

function mla(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
}

function lastRate(dir: string): number {
  const lines = readFileSync(join(dir, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tokens_per_s?: number });
  return lines.filter((l) => l.tokens_per_s !== undefined).pop()!.tokens_per_s!;
}

const dir = mkdtempSync(join(tmpdir(), 'mla-bench-torch-'));
try {
  const jobs: { name: string; teacher: string; params: number; steps: number; batch: number; seq: number }[] = [
    { name: 'stories260K', teacher: join(STORIES, 'stories260K.bin'), params: 0, steps: values.quick ? 8 : 30, batch: 16, seq: 128 },
  ];
  if (!values.quick) {
    const m = llamaShaped(dir);
    jobs.push({ name: `llama-shaped ${(m.params / 1e6).toFixed(1)}M`, teacher: m.path, params: m.params, steps: 10, batch: 8, seq: 128 });
  }
  const rows: (string | number)[][] = [];
  for (const j of jobs) {
    const student = join(dir, `${j.name}-student`.replace(/\W+/g, '-'));
    mla(['convert', j.teacher, '--tokenizer', TOK, '--out', student, '--kv-ratio', '4', '--basis', 'weight', '--rope-method', 'ecomla']);
    const common = [
      'distill', '--teacher', j.teacher, '--tokenizer', TOK, '--student', student, '--steps', String(j.steps), '--batch', String(j.batch),
      '--seq', String(j.seq), '--self-generate', '64', '--eval-every', String(j.steps), '--checkpoint-every', String(j.steps),
    ];
    const rates: Record<string, number> = {};
    for (const engine of ['cpu', 'torch'] as const) {
      const out = join(dir, `${student}-${engine}`);
      const extra = engine === 'torch' ? ['--engine', 'torch', '--device', 'cpu', ...(values.threads ? ['--threads', values.threads] : [])] : ['--backend', 'cpu'];
      mla([...common, '--out', out, ...extra]);
      rates[engine] = lastRate(out);
      if (values.json) process.stdout.write(JSON.stringify({ bench: 'torch-cpu', job: j.name, engine, tokens_per_s: rates[engine], steps: j.steps, batch: j.batch, seq: j.seq }) + '\n');
    }
    rows.push([j.name, `${j.batch} × ${j.seq}`, j.steps, rates.cpu!, rates.torch!, `${(rates.torch! / rates.cpu!).toFixed(2)}×`]);
  }
  if (!values.json) process.stdout.write(table(['job (distil all parameters)', 'batch × seq', 'steps', 'cpu engine tok/s', 'torch cpu tok/s', 'torch / cpu'], rows) + '\n');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

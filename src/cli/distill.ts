// mla distill --teacher T --student S --out DIR [--data FILE|DIR | --self-generate N [--sample-temperature τ] [--sample-top-p P]] [--eval-text FILE]
//   [--steps N | --tokens N] [--seq T] [--batch B] [--accum K] [--lr X] [--warmup N] [--clip C] [--kl-weight W]
//   [--ce-weight W] [--temperature τ] [--train attention|all] [--seed S] [--eval-every N] [--checkpoint-every N]
//   [--resume DIR] [--json]
//   [--engine cpu|torch [--device auto|cpu|cuda] [--nproc N] [--teacher-device same|cpu|own-gpu] [--dtype f32|bf16] [--python PATH] [--grad-checkpoint]
//    [--compile] [--kl-chunk ROWS] [--threads N]]

import { cliText, commonFlags, num, parse, type CommandSpec } from './args.js';
import { resolveBackend } from '../infer/open.js';
import { UserError } from '../errors.js';
import { DISTILL_DEFAULTS, runDistill, type DistillJob, type DistillOverrides } from '../train/run.js';
import type { TrainScope } from '../train/distill.js';
import { Progress } from './progress.js';
import { runDistillTorch, runUsesTorch, type TorchOverrides } from '../train/torch-engine.js';

// Numeric flags carry no parser default: on --resume an absent flag takes the run's saved setting instead.
export const distillSpec = {
  name: 'distill',
  args: '',
  flags: {
    teacher: { type: 'string', value: 'MODEL', doc: 'the teacher (required unless --resume)' },
    student: { type: 'string', value: 'MODEL', doc: 'the converted student to train (required unless --resume)' },
    out: { type: 'string', value: 'DIR', doc: 'run directory, new or empty (required unless --resume); it becomes a model directory' },
    data: { type: 'string', value: 'FILE|DIR', doc: 'training text (text files, or JSONL with "text") instead of teacher samples' },
    'self-generate': { type: 'string', value: 'N', defaultText: String(DISTILL_DEFAULTS.selfGenerate), doc: 'train on N teacher samples (when no --data)' },
    'sample-temperature': { type: 'string', value: 'τ', defaultText: String(DISTILL_DEFAULTS.sampleTemperature), doc: "temperature the teacher's training samples are drawn at (not the KL's --temperature)" },
    'sample-top-p': { type: 'string', value: 'P', defaultText: String(DISTILL_DEFAULTS.sampleTopP), doc: "nucleus of the teacher's training samples: the smallest set of tokens with probability ≥ P (1: all)" },
    'eval-text': { type: 'string', value: 'FILE', defaultText: 'held-out teacher samples', doc: 'held-out text for perplexity and KL (never trained on)' },
    steps: { type: 'string', value: 'N', defaultText: '--tokens / (seq · batch · accum)', doc: 'optimiser steps' },
    tokens: { type: 'string', value: 'N', defaultText: String(DISTILL_DEFAULTS.tokens), doc: 'training tokens (sets --steps)' },
    seq: { type: 'string', value: 'T', defaultText: String(DISTILL_DEFAULTS.seq), doc: 'sequence length in tokens' },
    batch: { type: 'string', value: 'B', defaultText: String(DISTILL_DEFAULTS.batch), doc: 'sequences per micro-batch' },
    accum: { type: 'string', value: 'K', defaultText: '1', doc: 'micro-batches accumulated per step' },
    lr: { type: 'string', value: 'X', defaultText: String(DISTILL_DEFAULTS.lr), doc: 'peak AdamW learning rate (β 0.9/0.95, cosine decay to 0.1·lr)' },
    warmup: { type: 'string', value: 'N', defaultText: '3 % of the steps, at least min(20, steps / 4)', doc: 'linear warmup steps' },
    clip: { type: 'string', value: 'C', defaultText: '1', doc: 'global gradient-norm clip (0 disables)' },
    'weight-decay': { type: 'string', value: 'W', defaultText: '0', doc: 'AdamW decoupled weight decay' },
    'kl-weight': { type: 'string', value: 'W', defaultText: '1', doc: 'weight of KL(teacher ‖ student) in the loss' },
    'ce-weight': { type: 'string', value: 'W', defaultText: '0', doc: 'weight of next-token cross-entropy in the loss' },
    temperature: { type: 'string', value: 'τ', defaultText: '1', doc: 'distillation temperature' },
    train: { type: 'string', value: 'attention|all', defaultText: 'all', doc: 'which parameters train' },
    seed: { type: 'string', value: 'S', defaultText: '1', doc: 'seed of the data order and teacher samples' },
    'eval-every': { type: 'string', value: 'N', defaultText: 'steps / 20', doc: 'held-out evaluation every N steps' },
    'checkpoint-every': { type: 'string', value: 'N', defaultText: 'steps / 10', doc: 'write DIR/checkpoint/ every N steps' },
    resume: { type: 'string', value: 'DIR', doc: "continue the run in DIR exactly (its saved settings are the defaults)" },
    // --engine torch (train/torch-engine.ts, python/mla_torch): the same job on PyTorch.
    engine: { type: 'string', value: 'cpu|torch', defaultText: 'cpu (on resume: the run\'s)', doc: 'run the job here (cpu) or on PyTorch (torch: GPUs, data-parallel processes)' },
    device: { type: 'string', value: 'auto|cpu|cuda', defaultText: 'auto', doc: 'torch device (auto: cuda when torch sees a GPU)' },
    nproc: { type: 'string', value: 'N', defaultText: '1', doc: 'torch: data-parallel processes (one per GPU; gloo on cpu), batch split across them' },
    'teacher-device': { type: 'string', value: 'same|cpu|own-gpu', defaultText: 'same', doc: "torch: the teacher on each process's device, on the CPU, or on a GPU of its own (process r: student cuda:2r, teacher cuda:2r+1)" },
    dtype: { type: 'string', value: 'f32|bf16', defaultText: 'bf16 on cuda, f32 on cpu', doc: 'torch: bf16 autocast + bf16 frozen teacher, or f32' },
    python: { type: 'string', value: 'PATH', defaultText: '$MLA_PYTHON, python3, /usr/bin/python3', doc: 'torch: the Python that has torch' },
    'grad-checkpoint': { type: 'boolean', doc: 'torch: recompute each layer in the backward (activation checkpointing)' },
    compile: { type: 'boolean', doc: 'torch: torch.compile the student (torch ≥ 2)' },
    'kl-chunk': { type: 'string', value: 'ROWS', defaultText: '1024', doc: 'torch: loss rows per chunk (bounds the f32 logits in memory)' },
    threads: { type: 'string', value: 'N', defaultText: "torch's default", doc: 'torch: CPU threads per process' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

/** Flag → setting: the numeric flags the loop takes as they are (the library checks their ranges). */
const SETTING_FLAGS = {
  steps: 'steps', tokens: 'tokens', seq: 'seq', batch: 'batch', accum: 'accum', lr: 'lr', warmup: 'warmup', clip: 'clip',
  'weight-decay': 'weightDecay', 'kl-weight': 'klWeight', 'ce-weight': 'ceWeight', temperature: 'temperature', seed: 'seed',
  'eval-every': 'evalEvery', 'checkpoint-every': 'checkpointEvery',
} as const satisfies Partial<Record<keyof typeof distillSpec.flags, keyof DistillOverrides>>;

export async function distillCommand(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, distillSpec);
  if (positionals.length > 0) throw new UserError(`mla distill: unexpected argument '${positionals[0]}' (models are given with --teacher and --student)`);
  if (v.resume && v.out && v.out !== v.resume) throw new UserError('mla distill: give --out DIR for a new run or --resume DIR to continue one, not both');
  const out = v.resume ?? v.out;
  if (!out) throw new UserError('mla distill: --out DIR is required (or --resume DIR)');
  if (!v.resume && (!v.teacher || !v.student)) throw new UserError('mla distill: --teacher MODEL and --student MODEL are required');
  const settings: DistillOverrides = {};
  for (const [flag, key] of Object.entries(SETTING_FLAGS)) {
    const value = v[flag as keyof typeof SETTING_FLAGS];
    if (value !== undefined) settings[key] = num(value, flag, Number.NaN);
  }
  if (v.train !== undefined) settings.train = v.train as TrainScope;
  let lastEval = '';
  const engine = v.engine ?? (v.resume && runUsesTorch(out) ? 'torch' : 'cpu');
  if (engine !== 'cpu' && engine !== 'torch') throw new UserError(`--engine: expected cpu or torch, got '${engine}'`);
  const torchFlags = ['device', 'nproc', 'teacher-device', 'dtype', 'python', 'grad-checkpoint', 'compile', 'kl-chunk', 'threads'] as const;
  const stray = torchFlags.find((k) => v[k] !== undefined);
  if (engine === 'cpu' && stray) throw new UserError(`--${stray}: only with --engine torch`);
  const int = (flag: 'nproc' | 'kl-chunk' | 'threads') => (v[flag] === undefined ? undefined : num(v[flag], flag, Number.NaN));
  const torch: TorchOverrides = {
    device: v.device as TorchOverrides['device'], nproc: int('nproc'), teacherDevice: v['teacher-device'] as TorchOverrides['teacherDevice'], dtype: v.dtype as TorchOverrides['dtype'], python: v.python,
    gradCheckpoint: v['grad-checkpoint'], compile: v.compile, klChunk: int('kl-chunk'), threads: int('threads'),
  };
  const job: DistillJob = {
    out, resume: v.resume !== undefined, teacher: v.teacher, student: v.student, tokenizer: v.tokenizer, data: v.data,
    selfGenerate: v['self-generate'] === undefined ? undefined : num(v['self-generate'], 'self-generate', Number.NaN),
    sampleTemperature: v['sample-temperature'] === undefined ? undefined : num(v['sample-temperature'], 'sample-temperature', Number.NaN),
    sampleTopP: v['sample-top-p'] === undefined ? undefined : num(v['sample-top-p'], 'sample-top-p', Number.NaN),
    evalText: v['eval-text'], settings, backend: resolveBackend(v.backend),
    progress: (phase, total) => {
      const p = new Progress(phase, total, phase === 'distill' ? 'tok' : 'seq');
      return phase === 'distill' ? { tick: (n = 1) => p.tick(n, lastEval), end: () => p.end() } : p;
    },
    onNote: (text) => process.stderr.write(`note: ${cliText(distillSpec, text)}\n`),
    onLog: (l) => {
      if (l.eval_ppl !== undefined) lastEval = `ppl ${l.eval_ppl.toFixed(3)} kl ${l.eval_kl!.toFixed(4)}`;
    },
  };
  const result = engine === 'torch' ? await runDistillTorch(job, torch) : runDistill(job);
  if (v.json) process.stdout.write(JSON.stringify({ out, eval_ppl: result.ppl, eval_kl: result.kl, tokens: result.tokens }) + '\n');
  else process.stdout.write(`distilled ${result.tokens} tokens: held-out perplexity ${result.ppl.toFixed(4)}, KL to teacher ${result.kl.toFixed(4)}\nwrote ${out} (log.jsonl, curve.svg, checkpoint/)\n`);
}

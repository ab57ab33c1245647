// mla distill --teacher T --student S --out DIR [--data FILE|DIR | --self-generate N] [--eval-text FILE]
//   [--steps N | --tokens N] [--seq T] [--batch B] [--accum K] [--lr X] [--warmup N] [--clip C] [--kl-weight W]
//   [--ce-weight W] [--temperature τ] [--train attention|all] [--seed S] [--eval-every N] [--checkpoint-every N]
//   [--resume DIR] [--json]
//   [--engine cpu|torch [--device auto|cpu|cuda] [--nproc N] [--dtype f32|bf16] [--python PATH] [--grad-checkpoint]
//    [--compile] [--kl-chunk ROWS] [--threads N]]

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { commonFlags, num, nonNegativeInt, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer, resolveBackend } from '../infer/open.js';
import { Model } from '../model/model.js';
import { UserError } from '../errors.js';
import { Batcher, readTexts, sampleSequences, tokenizeTexts } from '../train/data.js';
import { distill, type DistillSettings, type TrainScope } from '../train/distill.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { CONVERSION_RECORD, tokenizerFiles } from './convert.js';
import { Progress } from './progress.js';
import { cudaMissing, distillTorch, findTorchPython, type TorchOptions } from '../train/torch-engine.js';

/** Defaults chosen by measurement on stories260K (README: distillation results). */
export const DISTILL_DEFAULTS = { seq: 256, batch: 16, tokens: 8_000_000, lr: 3e-3, selfGenerate: 8192, evalSamples: 32 };

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
    'eval-text': { type: 'string', value: 'FILE', defaultText: 'held-out teacher samples', doc: 'held-out text for perplexity and KL (never trained on)' },
    steps: { type: 'string', value: 'N', defaultText: '--tokens / (seq · batch · accum)', doc: 'optimiser steps' },
    tokens: { type: 'string', value: 'N', defaultText: String(DISTILL_DEFAULTS.tokens), doc: 'training tokens (sets --steps)' },
    seq: { type: 'string', value: 'T', defaultText: String(DISTILL_DEFAULTS.seq), doc: 'sequence length in tokens' },
    batch: { type: 'string', value: 'B', defaultText: String(DISTILL_DEFAULTS.batch), doc: 'sequences per micro-batch' },
    accum: { type: 'string', value: 'K', defaultText: '1', doc: 'micro-batches accumulated per step' },
    lr: { type: 'string', value: 'X', defaultText: String(DISTILL_DEFAULTS.lr), doc: 'peak AdamW learning rate (β 0.9/0.95, cosine decay to 0.1·lr)' },
    warmup: { type: 'string', value: 'N', defaultText: '3 % of the steps', doc: 'linear warmup steps' },
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
    engine: { type: 'string', value: 'cpu|torch', defaultText: 'cpu', doc: 'run the job here (cpu) or on PyTorch (torch: GPUs, torchrun-style processes)' },
    device: { type: 'string', value: 'auto|cpu|cuda', defaultText: 'auto', doc: 'torch device (auto: cuda when torch sees a GPU)' },
    nproc: { type: 'string', value: 'N', defaultText: '1', doc: 'torch: data-parallel processes (one per GPU; gloo on cpu), batch split across them' },
    dtype: { type: 'string', value: 'f32|bf16', defaultText: 'bf16 on cuda, f32 on cpu', doc: 'torch: bf16 autocast + bf16 frozen teacher, or f32' },
    python: { type: 'string', value: 'PATH', defaultText: '$MLA_PYTHON, python3, /usr/bin/python3', doc: 'torch: the Python that has torch' },
    'grad-checkpoint': { type: 'boolean', doc: 'torch: recompute each layer in the backward (activation checkpointing)' },
    compile: { type: 'boolean', doc: 'torch: torch.compile the student (torch ≥ 2)' },
    'kl-chunk': { type: 'string', value: 'ROWS', defaultText: '1024', doc: 'torch: loss rows per chunk (bounds the f32 logits in memory)' },
    threads: { type: 'string', value: 'N', defaultText: "torch's default", doc: 'torch: CPU threads per process' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

type Values = ReturnType<typeof parse<typeof distillSpec.flags>>['values'];

function settingsFrom(v: Values, saved?: Record<string, unknown>): DistillSettings {
  const d = (k: keyof DistillSettings, fallback: number) => (saved && typeof saved[k] === 'number' ? (saved[k] as number) : fallback);
  const seq = num(v.seq, 'seq', d('seq', DISTILL_DEFAULTS.seq), positiveInt, 'a positive integer');
  const batch = num(v.batch, 'batch', d('batch', DISTILL_DEFAULTS.batch), positiveInt, 'a positive integer');
  const accum = num(v.accum, 'accum', d('accum', 1), positiveInt, 'a positive integer');
  if (v.steps !== undefined && v.tokens !== undefined) throw new UserError('mla distill: give --steps or --tokens, not both');
  const tokens = num(v.tokens, 'tokens', DISTILL_DEFAULTS.tokens, positiveInt, 'a positive integer');
  const steps = num(v.steps, 'steps', d('steps', Math.max(1, Math.round(tokens / (seq * batch * accum)))), positiveInt, 'a positive integer');
  const train = (v.train ?? (saved?.train as string | undefined) ?? 'all') as TrainScope;
  if (train !== 'all' && train !== 'attention') throw new UserError(`--train: expected attention or all, got '${train}'`);
  return {
    steps, batch, seq, accum, train,
    lr: num(v.lr, 'lr', d('lr', DISTILL_DEFAULTS.lr), (n) => n > 0, 'a positive number'),
    warmup: num(v.warmup, 'warmup', d('warmup', Math.max(1, Math.round(steps * 0.03))), nonNegativeInt, 'a non-negative integer'),
    minLrRatio: d('minLrRatio', 0.1),
    clip: num(v.clip, 'clip', d('clip', 1), (n) => n >= 0, 'a number ≥ 0 (0 disables)'),
    weightDecay: num(v['weight-decay'], 'weight-decay', d('weightDecay', 0), (n) => n >= 0, 'a number ≥ 0'),
    klWeight: num(v['kl-weight'], 'kl-weight', d('klWeight', 1), (n) => n >= 0, 'a number ≥ 0'),
    ceWeight: num(v['ce-weight'], 'ce-weight', d('ceWeight', 0), (n) => n >= 0, 'a number ≥ 0'),
    temperature: num(v.temperature, 'temperature', d('temperature', 1), (n) => n > 0, 'a positive number'),
    seed: num(v.seed, 'seed', d('seed', 1), nonNegativeInt, 'a non-negative integer'),
    evalEvery: num(v['eval-every'], 'eval-every', d('evalEvery', Math.max(1, Math.round(steps / 20))), positiveInt, 'a positive integer'),
    checkpointEvery: num(v['checkpoint-every'], 'checkpoint-every', d('checkpointEvery', Math.max(1, Math.round(steps / 10))), positiveInt, 'a positive integer'),
  };
}

/** --engine torch options (null for the cpu engine); a resumed run keeps its engine unless told otherwise. */
function torchOptionsFrom(v: Values, saved?: TorchOptions): TorchOptions | null {
  const engine = v.engine ?? (saved ? 'torch' : 'cpu');
  if (engine !== 'cpu' && engine !== 'torch') throw new UserError(`--engine: expected cpu or torch, got '${engine}'`);
  if (engine === 'cpu') {
    const stray = (['device', 'nproc', 'dtype', 'python', 'grad-checkpoint', 'compile', 'kl-chunk', 'threads'] as const).find((k) => v[k] !== undefined);
    if (stray) throw new UserError(`--${stray}: only with --engine torch`);
    return null;
  }
  let device = (v.device ?? saved?.device ?? 'auto') as TorchOptions['device'] | 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new UserError(`--device: expected auto, cpu or cuda, got '${device}'`);
  // Probe Python, torch and the GPU before any data work, so a missing piece fails at once.
  const py = findTorchPython(v.python ?? saved?.python);
  if (device === 'auto') device = py.cuda ? 'cuda' : 'cpu';
  if (device === 'cuda' && !py.cuda) throw cudaMissing(py);
  const dtype = (v.dtype ?? saved?.dtype ?? (device === 'cuda' ? 'bf16' : 'f32')) as TorchOptions['dtype'];
  if (dtype !== 'f32' && dtype !== 'bf16') throw new UserError(`--dtype: expected f32 or bf16, got '${dtype}'`);
  return {
    device, dtype,
    nproc: num(v.nproc, 'nproc', saved?.nproc ?? 1, positiveInt, 'a positive integer'),
    python: v.python ?? saved?.python,
    gradCheckpoint: v['grad-checkpoint'] ?? saved?.gradCheckpoint ?? false,
    compile: v.compile ?? saved?.compile ?? false,
    klChunk: num(v['kl-chunk'], 'kl-chunk', saved?.klChunk ?? 1024, positiveInt, 'a positive integer'),
    threads: num(v.threads, 'threads', saved?.threads ?? 0, nonNegativeInt, 'a non-negative integer'),
  };
}

export async function distillCommand(argv: string[]): Promise<void> {
  const { values: v } = parse(argv, distillSpec);
  const outDir = v.resume ?? v.out;
  if (!outDir) throw new UserError('mla distill: --out DIR is required (or --resume DIR)');
  const runFile = join(outDir, 'run.json');
  let saved: { teacher: string; student: string; tokenizer?: string; data?: string; selfGenerate?: number; evalText?: string; settings: Record<string, unknown>; torch?: TorchOptions } | null = null;
  if (v.resume) {
    if (!existsSync(runFile)) throw new UserError(`--resume ${v.resume}: no run.json (not a distillation directory)`);
    saved = JSON.parse(readFileSync(runFile, 'utf8'));
  } else {
    if (!v.teacher || !v.student) throw new UserError('mla distill: --teacher MODEL and --student MODEL are required');
    if (existsSync(outDir) && readdirSync(outDir).length > 0) throw new UserError(`--out ${outDir}: already exists and is not empty (use --resume ${outDir} to continue it)`);
  }
  const teacherPath = saved?.teacher ?? v.teacher!;
  const studentPath = saved?.student ?? v.student!;
  const tokenizerPath = saved?.tokenizer ?? v.tokenizer;
  const settings = settingsFrom(v, saved?.settings);
  const torchOpts = torchOptionsFrom(v, saved?.torch);
  const be = resolveBackend(v.backend);
  const teacher = openModel(teacherPath, { tokenizer: tokenizerPath }, be);
  let student = openModel(studentPath, { tokenizer: tokenizerPath }, be);
  // The torch engine reads its own checkpoint (python/mla_torch/distill.py); the cpu engine loads it here.
  const resumeCp = v.resume && !torchOpts ? loadCheckpoint(outDir) : null;
  if (resumeCp) student = { ...student, model: Model.fromWeights(resumeCp.config, resumeCp.weights, be, join(outDir, 'checkpoint')) };
  const tok = requireTokenizer(teacher);
  mkdirSync(outDir, { recursive: true });

  // Data: a corpus, or teacher samples (cached in DIR so a resume trains on the same ones).
  const dataPath = saved?.data ?? v.data;
  const selfN = saved?.selfGenerate ?? (v['self-generate'] !== undefined ? num(v['self-generate'], 'self-generate', 0, positiveInt, 'a positive integer') : DISTILL_DEFAULTS.selfGenerate);
  const samplesFile = join(outDir, 'teacher-samples.json');
  let trainSeqs: number[][];
  let evalSeqs: number[][];
  const evalText = saved?.evalText ?? v['eval-text'];
  if (existsSync(samplesFile)) {
    const s = JSON.parse(readFileSync(samplesFile, 'utf8')) as { train: number[][]; eval: number[][] };
    trainSeqs = s.train;
    evalSeqs = s.eval;
  } else {
    if (dataPath) {
      trainSeqs = tokenizeTexts(readTexts(dataPath), tok, settings.seq + 1);
      evalSeqs = [];
    } else {
      const bar = new Progress('teacher samples', selfN, 'seq');
      trainSeqs = sampleSequences(teacher.model, selfN, settings.seq + 1, settings.seed, 64, bar);
      // Held-out teacher samples from another seed: never trained on.
      evalSeqs = sampleSequences(teacher.model, DISTILL_DEFAULTS.evalSamples, settings.seq + 1, settings.seed + 1_000_003, 64);
    }
    writeFileSync(samplesFile, JSON.stringify({ train: trainSeqs, eval: evalSeqs }));
  }
  if (evalText) evalSeqs = tokenizeTexts(readTexts(evalText), tok, Math.min(settings.seq + 1, teacher.model.config.maxPositions));
  if (evalSeqs.length === 0) throw new UserError('mla distill: no held-out text: give --eval-text FILE');
  if (!v.resume) {
    writeFileSync(runFile, JSON.stringify({ teacher: teacherPath, student: studentPath, tokenizer: tokenizerPath, data: dataPath, selfGenerate: dataPath ? undefined : selfN, evalText, settings, torch: torchOpts ?? undefined }, null, 2) + '\n');
  }
  const total = settings.steps * settings.batch * settings.accum * settings.seq;
  const bar = new Progress('distill', total, 'tok');
  let lastEval = '';
  const copyFiles = [
    ...tokenizerFiles(teacherPath, tokenizerPath),
    // Keep how the student was made (spectra for `mla compare`).
    ...(existsSync(join(studentPath, CONVERSION_RECORD)) ? [{ from: join(studentPath, CONVERSION_RECORD), name: CONVERSION_RECORD }] : []),
  ];
  const onLog = (l: { eval_ppl?: number; eval_kl?: number }) => {
    if (l.eval_ppl !== undefined) lastEval = `ppl ${l.eval_ppl.toFixed(3)} kl ${l.eval_kl!.toFixed(4)}`;
  };
  const progress = { tick: (n = 1) => bar.tick(n, lastEval), end: () => bar.end() };
  const result = torchOpts ? await distillTorch({
    teacher: { path: teacherPath, config: teacher.model.config, weights: teacher.model.weights() },
    student: { path: studentPath, config: student.model.config, weights: student.model.weights() },
    trainSeqs, evalSeqs, settings, outDir, copyFiles, resume: !!v.resume, torch: torchOpts, progress, onLog,
  }) : distill({
    teacher: teacher.model,
    student: student.model,
    train: new Batcher(trainSeqs, settings.seq, settings.batch, settings.seed),
    evalSeqs,
    settings,
    outDir,
    copyFiles,
    resume: resumeCp ? { state: resumeCp.state, moments: resumeCp.moments, adamStep: resumeCp.adamStep } : undefined,
    progress,
    onLog,
  });
  if (v.json) process.stdout.write(JSON.stringify({ out: outDir, eval_ppl: result.ppl, eval_kl: result.kl, tokens: result.tokens }) + '\n');
  else process.stdout.write(`distilled ${result.tokens} tokens: held-out perplexity ${result.ppl.toFixed(4)}, KL to teacher ${result.kl.toFixed(4)}\nwrote ${outDir} (log.jsonl, curve.svg, checkpoint/)\n`);
}

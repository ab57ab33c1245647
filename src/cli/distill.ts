// mla distill --teacher T --student S --out DIR [--data FILE|DIR | --self-generate N] [--eval-text FILE]
//   [--steps N | --tokens N] [--seq T] [--batch B] [--accum K] [--lr X] [--warmup N] [--clip C] [--kl-weight W]
//   [--ce-weight W] [--temperature τ] [--train attention|all] [--seed S] [--eval-every N] [--checkpoint-every N]
//   [--resume DIR] [--json]

import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { commonFlags, num, nonNegativeInt, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, requireTokenizer, resolveBackend } from '../infer/open.js';
import { Model } from '../model/model.js';
import { UserError } from '../errors.js';
import { Batcher, readTexts, sampleSequences, tokenizeTexts } from '../train/data.js';
import { distill, type DistillSettings, type TrainScope } from '../train/distill.js';
import { checkpointDir, loadCheckpoint } from '../train/checkpoint.js';
import { checkDistillPlan } from '../train/preflight.js';
import { checkOutput } from '../io/output.js';
import {
  RUN_RECORD, TRAJECTORY_SETTINGS, checkStateMatchesRun, readRunRecord, readTeacherSamples, writeRunRecord, writeTeacherSamples, type RunRecord,
} from '../io/run-files.js';
import { CONVERSION_RECORD, tokenizerFiles } from './convert.js';
import { Progress } from './progress.js';

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
    ...commonFlags,
  },
} as const satisfies CommandSpec;

type Values = ReturnType<typeof parse<typeof distillSpec.flags>>['values'];

/** Flag name of each setting (messages name the flag). */
const FLAG: Record<keyof DistillSettings, string> = {
  steps: 'steps', batch: 'batch', seq: 'seq', accum: 'accum', lr: 'lr', warmup: 'warmup', minLrRatio: 'min-lr-ratio', clip: 'clip',
  weightDecay: 'weight-decay', klWeight: 'kl-weight', ceWeight: 'ce-weight', temperature: 'temperature', train: 'train', seed: 'seed',
  evalEvery: 'eval-every', checkpointEvery: 'checkpoint-every',
};

/** Settings from flags; on --resume the run's saved settings are the defaults, and the ones that fix the training
 *  trajectory (batch, seq, seed, …) cannot be changed. */
function settingsFrom(v: Values, saved?: DistillSettings): DistillSettings {
  const d = <K extends keyof DistillSettings>(k: K, fallback: DistillSettings[K]): DistillSettings[K] => (saved ? saved[k] : fallback);
  const seq = num(v.seq, 'seq', d('seq', DISTILL_DEFAULTS.seq), positiveInt, 'a positive integer');
  const batch = num(v.batch, 'batch', d('batch', DISTILL_DEFAULTS.batch), positiveInt, 'a positive integer');
  const accum = num(v.accum, 'accum', d('accum', 1), positiveInt, 'a positive integer');
  if (v.steps !== undefined && v.tokens !== undefined) throw new UserError('mla distill: give --steps or --tokens, not both');
  const tokens = num(v.tokens, 'tokens', DISTILL_DEFAULTS.tokens, positiveInt, 'a positive integer');
  const steps = v.tokens !== undefined
    ? Math.max(1, Math.round(tokens / (seq * batch * accum)))
    : num(v.steps, 'steps', d('steps', Math.max(1, Math.round(tokens / (seq * batch * accum)))), positiveInt, 'a positive integer');
  const train = (v.train ?? d('train', 'all')) as TrainScope;
  if (train !== 'all' && train !== 'attention') throw new UserError(`--train: expected attention or all, got '${train}'`);
  const s: DistillSettings = {
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
  if (s.klWeight === 0 && s.ceWeight === 0) throw new UserError('--kl-weight and --ce-weight are both 0: nothing to train on (give one a positive weight)');
  if (saved) {
    for (const k of TRAJECTORY_SETTINGS) {
      if (s[k] !== saved[k]) throw new UserError(`--${FLAG[k]}: cannot change on --resume (the run uses ${JSON.stringify(saved[k])})`);
    }
  }
  return s;
}

export async function distillCommand(argv: string[]): Promise<void> {
  const { values: v } = parse(argv, distillSpec);
  if (v.resume && v.out && v.out !== v.resume) throw new UserError('mla distill: give --out DIR for a new run or --resume DIR to continue one, not both');
  const outDir = v.resume ?? v.out;
  if (!outDir) throw new UserError('mla distill: --out DIR is required (or --resume DIR)');
  let saved: RunRecord | null = null;
  if (v.resume) {
    if (!existsSync(v.resume)) throw new UserError(`--resume ${v.resume}: no such directory`);
    saved = readRunRecord(v.resume);
    for (const [flag, given] of [['teacher', v.teacher], ['student', v.student], ['data', v.data], ['eval-text', v['eval-text']], ['tokenizer', v.tokenizer]] as const) {
      if (given !== undefined) throw new UserError(`--${flag}: cannot be given with --resume (the run's ${RUN_RECORD} fixes it)`);
    }
  } else {
    if (!v.teacher || !v.student) throw new UserError('mla distill: --teacher MODEL and --student MODEL are required');
    if (v.data !== undefined && v['self-generate'] !== undefined) throw new UserError('mla distill: give --data FILE or --self-generate N, not both');
    if (v.data !== undefined && v['eval-text'] === undefined) throw new UserError('mla distill: --eval-text FILE is required with --data (held-out text to measure the student on)');
    const inputs = [v.teacher, v.student, v.tokenizer, v.data, v['eval-text']];
    checkOutput({ flag: '--out', out: outDir, inputs, kind: 'dir', overwrite: true, merge: true });
    if (existsSync(outDir) && readdirSync(outDir).length > 0) throw new UserError(`--out ${outDir}: already exists and is not empty (use --resume ${outDir} to continue it)`);
  }
  const teacherPath = saved?.teacher ?? v.teacher!;
  const studentPath = saved?.student ?? v.student!;
  const tokenizerPath = saved?.tokenizer ?? v.tokenizer;
  const dataPath = saved?.data ?? v.data;
  const evalText = saved?.evalText ?? v['eval-text'];
  const selfN = saved?.selfGenerate ?? (v['self-generate'] !== undefined ? num(v['self-generate'], 'self-generate', 0, positiveInt, 'a positive integer') : DISTILL_DEFAULTS.selfGenerate);
  const settings = settingsFrom(v, saved?.settings);
  // Cheap checks first: the text inputs are read before any model is loaded or any teacher sample drawn.
  const dataTexts = !saved && dataPath ? readTexts(dataPath, '--data') : null;
  const evalTexts = evalText ? readTexts(evalText, '--eval-text') : null;

  const be = resolveBackend(v.backend);
  const teacher = openModel(teacherPath, { tokenizer: tokenizerPath }, be);
  // Only the teacher's tokenizer is used: the student is checked against it by vocabulary size.
  let student = openModel(studentPath, {}, be);
  const tok = requireTokenizer(teacher);
  checkDistillPlan(teacher.model.config, student.model.config, settings, { teacher: teacherPath, student: studentPath });
  let evalSeqs = evalTexts ? tokenizeTexts(evalTexts, tok, settings.seq + 1) : null;
  if (evalSeqs && evalSeqs.length === 0) throw new UserError(`--eval-text ${evalText}: no text of at least 2 tokens`);
  const resumeCp = v.resume ? loadCheckpoint(outDir) : null;
  if (resumeCp) {
    checkStateMatchesRun(resumeCp.stateFile, resumeCp.state, `${outDir}/${RUN_RECORD}`, saved!.settings);
    student = { ...student, model: Model.fromWeights(resumeCp.config, resumeCp.weights, be, checkpointDir(outDir)) };
  }
  const cached = v.resume ? readTeacherSamples(outDir, teacher.model.config.vocabSize) : null;
  let trainSeqs = dataTexts ? tokenizeTexts(dataTexts, tok, settings.seq + 1) : cached?.train ?? null;
  if (dataTexts && trainSeqs!.length === 0) throw new UserError(`--data ${dataPath}: no text of at least 2 tokens`);

  // From here on the run writes into DIR; a failure before its first checkpoint removes what it made.
  const created = !existsSync(outDir);
  mkdirSync(outDir, { recursive: true });
  try {
    if (!trainSeqs) {
      if (saved?.data) trainSeqs = tokenizeTexts(readTexts(saved.data, '--data'), tok, settings.seq + 1);
      else {
        const bar = new Progress('teacher samples', selfN, 'seq');
        trainSeqs = sampleSequences(teacher.model, selfN, settings.seq + 1, settings.seed, 64, bar);
        // Held-out teacher samples from another seed: never trained on.
        const heldOut = sampleSequences(teacher.model, DISTILL_DEFAULTS.evalSamples, settings.seq + 1, settings.seed + 1_000_003, 64);
        writeTeacherSamples(outDir, { train: trainSeqs, eval: heldOut });
        evalSeqs ??= heldOut;
      }
    }
    evalSeqs ??= cached?.eval ?? null;
    if (!evalSeqs || evalSeqs.length === 0) throw new UserError('mla distill: no held-out text: give --eval-text FILE');
    if (!v.resume) {
      writeRunRecord(outDir, {
        teacher: teacherPath, student: studentPath, tokenizer: tokenizerPath, data: dataPath, selfGenerate: dataPath ? undefined : selfN, evalText, settings,
      });
    }
    await runDistill(v, outDir, teacher, student, trainSeqs, evalSeqs, settings, teacherPath, tokenizerPath, studentPath, resumeCp);
  } catch (e) {
    if (!v.resume && !existsSync(checkpointDir(outDir))) {
      if (created) rmSync(outDir, { recursive: true, force: true });
      else for (const n of readdirSync(outDir)) rmSync(join(outDir, n), { recursive: true, force: true });
    }
    throw e;
  }
}

async function runDistill(
  v: Values, outDir: string, teacher: ReturnType<typeof openModel>, student: ReturnType<typeof openModel>, trainSeqs: number[][],
  evalSeqs: number[][], settings: DistillSettings, teacherPath: string, tokenizerPath: string | undefined, studentPath: string,
  resumeCp: ReturnType<typeof loadCheckpoint> | null,
): Promise<void> {
  const total = settings.steps * settings.batch * settings.accum * settings.seq;
  const bar = new Progress('distill', total, 'tok');
  let lastEval = '';
  const result = distill({
    teacher: teacher.model,
    student: student.model,
    train: new Batcher(trainSeqs, settings.seq, settings.batch, settings.seed),
    evalSeqs,
    settings,
    outDir,
    copyFiles: [
      ...tokenizerFiles(teacherPath, tokenizerPath),
      // Keep how the student was made (spectra for `mla compare`).
      ...(existsSync(join(studentPath, CONVERSION_RECORD)) ? [{ from: join(studentPath, CONVERSION_RECORD), name: CONVERSION_RECORD }] : []),
    ],
    resume: resumeCp ? { state: resumeCp.state, moments: resumeCp.moments, adamStep: resumeCp.adamStep } : undefined,
    progress: { tick: (n = 1) => bar.tick(n, lastEval), end: () => bar.end() },
    onLog: (l) => {
      if (l.eval_ppl !== undefined) lastEval = `ppl ${l.eval_ppl.toFixed(3)} kl ${l.eval_kl!.toFixed(4)}`;
    },
  });
  if (v.json) process.stdout.write(JSON.stringify({ out: outDir, eval_ppl: result.ppl, eval_kl: result.kl, tokens: result.tokens }) + '\n');
  else process.stdout.write(`distilled ${result.tokens} tokens: held-out perplexity ${result.ppl.toFixed(4)}, KL to teacher ${result.kl.toFixed(4)}\nwrote ${outDir} (log.jsonl, curve.svg, checkpoint/)\n`);
}

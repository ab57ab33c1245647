// The distillation job (library entry point of `mla distill`): open teacher and student, build the training data (a
// corpus or teacher samples, cached in the run directory so a resume trains on the same ones), resolve the settings
// (explicit > the run's saved ones on resume > defaults), record run.json and run the loop (train/distill.ts).

import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Backend } from '../tensor/backend.js';
import { Model } from '../model/model.js';
import { inspectModel, loadModel, modelTokenizer } from '../io/load.js';
import type { Tokenizer } from '../io/tokenizer.js';
import type { ModelConfig } from '../model/config.js';
import { tokenizerFiles } from '../io/tokenizer-files.js';
import { OptionError } from '../errors.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { Batcher, PLAIN_SAMPLING, readTexts, sampleSequences, tokenizeTexts, type SamplingRule } from './data.js';
import { distill, type DistillSettings, type LogLine, type TrainScope } from './distill.js';
import { checkpointDir, loadCheckpoint, readCheckpointState } from './checkpoint.js';
import { checkDistillPlan } from './preflight.js';
import { CONVERSION_RECORD } from '../convert/record.js';
import { checkOutput } from '../io/output.js';
import {
  RUN_RECORD, TRAJECTORY_SETTINGS, checkStateMatchesRun, readRunRecord, readTeacherSamples, writeRunRecord, writeTeacherSamples, type RunRecord,
  type TeacherSamples,
} from '../io/run-files.js';

/** Defaults chosen by measurement on stories260K (README: distillation results). sampleTemperature 1.2: teacher samples
 *  a little hotter than the teacher's own distribution cover more of the contexts real text brings; it beat 1 on both
 *  trained teachers measured (stories260K and the head-dim-32 GQA model), both seeds, three held-out texts, in
 *  perplexity and in KL to the teacher (README: distillation recipe ablations); 1.5 is not better by KL on both. */
export const DISTILL_DEFAULTS = {
  seq: 256, batch: 16, tokens: 8_000_000, lr: 3e-3, selfGenerate: 8192, sampleTemperature: 1.2, sampleTopP: 1, evalSamples: 32,
};

/**
 * Warmup steps by default: 3 % of the run, but at least min(20, a quarter of the run). AdamW's first steps move every
 * weight by about the step's lr, so a short run whose 3 % is one step starts at the full lr: at 32 steps that threw a
 * good student (gqa-d32 2×, held-out KL 0.27) to a training KL of 3.4 and left it at ppl 36.5 after 131k tokens, 27.8
 * with 8 warmup steps (README "Conversion recipes"). Runs of ≥ 667 steps (2.7M tokens at the default batch) keep 3 %.
 */
export function defaultWarmup(steps: number): number {
  return Math.max(1, Math.round(steps * 0.03), Math.min(20, Math.ceil(steps / 4)));
}

/** Settings a caller may give; every one left out takes the run's saved value on resume, else its default. `tokens`
 *  sets `steps` = tokens / (seq · batch · accum). */
export type DistillOverrides = Partial<DistillSettings> & { tokens?: number };

export interface DistillJob {
  /** The run directory: new or empty, or (with resume) a run to continue. It ends as a model directory. */
  out: string;
  /** Continue the run in `out` exactly: its run.json gives the models, data and settings, its checkpoint the state. */
  resume?: boolean;
  teacher?: string;
  student?: string;
  /** Tokenizer for a llama2.c teacher (a .bin, or tokenizer.json). */
  tokenizer?: string;
  /** Training text (text files, JSONL with "text", or a directory of them) instead of teacher samples. */
  data?: string;
  /** Teacher samples to train on when there is no `data`. */
  selfGenerate?: number;
  /** Teacher samples already drawn (drawTeacherSamples) to train and evaluate on instead of drawing `selfGenerate`:
   *  several students trained on the same samples (bench/recipes.ts --distill). Cached in `out` like drawn ones;
   *  draw them with the job's sampling rule (run.json records it). */
  samples?: TeacherSamples;
  /** How the teacher's training samples are drawn: softmax(logits / sampleTemperature) within the top-sampleTopP
   *  nucleus (defaults DISTILL_DEFAULTS). The held-out teacher samples are always drawn at temperature 1 over the whole
   *  distribution, so runs that sample differently are evaluated on the same text. Not the KL temperature
   *  (settings.temperature). */
  sampleTemperature?: number;
  sampleTopP?: number;
  /** Held-out text (never trained on); default: held-out teacher samples. */
  evalText?: string;
  settings?: DistillOverrides;
  backend: Backend;
  /** Progress sinks for the phases ('teacher samples' in sequences, 'distill' in tokens). */
  progress?: (phase: 'teacher samples' | 'distill', total: number) => ProgressSink;
  onLog?: (l: LogLine) => void;
  /** Notes from an engine (the torch engine's --compile fallback), with {field} references. */
  onNote?: (text: string) => void;
}

export interface DistillJobResult {
  out: string;
  /** Held-out perplexity and KL(teacher ‖ student) per token after the last step. */
  ppl: number;
  kl: number;
  tokens: number;
  /** The trained student. */
  student: Model;
}

type Check = [(n: number) => boolean, string];
const positiveInt: Check = [(n) => Number.isInteger(n) && n > 0, 'a positive integer'];
const nonNegativeInt: Check = [(n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'];
const nonNegative: Check = [(n) => n >= 0, 'a number ≥ 0'];
const CHECKS: Record<Exclude<keyof DistillOverrides, 'train'>, Check> = {
  steps: positiveInt, tokens: positiveInt, batch: positiveInt, seq: positiveInt, accum: positiveInt,
  lr: [(n) => n > 0, 'a positive number'], warmup: nonNegativeInt, minLrRatio: [(n) => n >= 0 && n <= 1, 'a number in [0, 1]'],
  clip: [(n) => n >= 0, 'a number ≥ 0 (0 disables)'], weightDecay: nonNegative, klWeight: nonNegative, ceWeight: nonNegative,
  temperature: [(n) => n > 0, 'a positive number'], seed: nonNegativeInt, evalEvery: positiveInt, checkpointEvery: positiveInt,
};

/** Full settings from the caller's overrides, the run's saved settings (resume), then the defaults. */
export function resolveSettings(o: DistillOverrides = {}, saved: Record<string, unknown> = {}): DistillSettings {
  for (const [k, [ok, expected]] of Object.entries(CHECKS)) {
    const v = o[k as keyof typeof CHECKS];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))) throw new OptionError(k, undefined, `expected ${expected}, got '${String(v)}'`);
  }
  if (o.steps !== undefined && o.tokens !== undefined) throw new OptionError('steps', undefined, 'give {steps} or {tokens}, not both');
  const d = (k: keyof DistillSettings, fallback: number): number => o[k] as number | undefined ?? (typeof saved[k] === 'number' ? (saved[k]) : fallback);
  const seq = d('seq', DISTILL_DEFAULTS.seq);
  const batch = d('batch', DISTILL_DEFAULTS.batch);
  const accum = d('accum', 1);
  const stepsFor = (tokens: number) => Math.max(1, Math.round(tokens / (seq * batch * accum)));
  const steps = o.steps ?? (o.tokens !== undefined ? stepsFor(o.tokens) : d('steps', stepsFor(DISTILL_DEFAULTS.tokens)));
  const train = (o.train ?? (saved.train as string | undefined) ?? 'all') as TrainScope;
  if (train !== 'all' && train !== 'attention') throw new OptionError('train', undefined, `expected attention or all, got '${train}'`);
  return {
    steps, batch, seq, accum, train,
    lr: d('lr', DISTILL_DEFAULTS.lr),
    warmup: d('warmup', defaultWarmup(steps)),
    minLrRatio: d('minLrRatio', 0.1),
    clip: d('clip', 1),
    weightDecay: d('weightDecay', 0),
    klWeight: d('klWeight', 1),
    ceWeight: d('ceWeight', 0),
    temperature: d('temperature', 1),
    seed: d('seed', 1),
    evalEvery: d('evalEvery', Math.max(1, Math.round(steps / 20))),
    checkpointEvery: d('checkpointEvery', Math.max(1, Math.round(steps / 10))),
  };
}

/** Settings checked before any work: a loss with nothing to train on, and (on resume) a change of what fixes the
 *  training trajectory (the checkpoint was made with the saved values). */
function checkSettings(s: DistillSettings, saved: DistillSettings | null): void {
  if (s.klWeight === 0 && s.ceWeight === 0) throw new OptionError('klWeight', 0, '{klWeight} and {ceWeight} are both 0: nothing to train on (give one a positive weight)');
  if (!saved) return;
  for (const k of TRAJECTORY_SETTINGS) {
    if (s[k] !== saved[k]) throw new OptionError(k, s[k], `cannot change on {resume} (the run uses ${JSON.stringify(saved[k])})`);
  }
}

/**
 * The teacher samples a distillation without {data} trains on: `n` sequences of seq + 1 tokens from seed `seed`, drawn
 * with `rule`, and DISTILL_DEFAULTS.evalSamples held-out ones from another seed at temperature 1 over the whole
 * distribution whatever the training samples' rule (the teacher's own distribution, the same text for every rule):
 * never trained on.
 */
export function drawTeacherSamples(
  teacher: Model, n: number, settings: Pick<DistillSettings, 'seq' | 'seed'>,
  rule: SamplingRule = { temperature: DISTILL_DEFAULTS.sampleTemperature, topP: DISTILL_DEFAULTS.sampleTopP }, progress?: ProgressSink,
): TeacherSamples {
  const train = sampleSequences(teacher, n, settings.seq + 1, settings.seed, 64, progress, rule);
  const heldOut = sampleSequences(teacher, DISTILL_DEFAULTS.evalSamples, settings.seq + 1, settings.seed + 1_000_003, 64, undefined, PLAIN_SAMPLING);
  return { train, eval: heldOut };
}

/** Run (or, with resume, continue) a distillation; the run directory ends as the distilled model's directory. */
export function runDistill(job: DistillJob): DistillJobResult {
  return prepareDistill(job, {}, (p) => {
    // prepareDistill opens the weights unless asked for headers only (which this engine never asks).
    const m = p.models!;
    return train(job, p.outDir, m.teacher, m.student, p.trainSeqs, p.evalSeqs, p.settings, p.teacherPath, p.tokenizerPath, p.studentPath, p.resumeCp, p.progress);
  });
}

/** What the training loop needs, as prepareDistill hands it to an engine. */
export interface PreparedDistill {
  outDir: string;
  teacherPath: string;
  studentPath: string;
  tokenizerPath: string | undefined;
  teacherConfig: ModelConfig;
  /** The student's config (on resume with the checkpoint loaded, the checkpoint's). */
  studentConfig: ModelConfig;
  /** The models with their weights; null with `headersOnly` (the engine reads the weight files itself). The student is
   *  the one given, or on resume with the checkpoint loaded, the checkpoint's weights. */
  models: { teacher: Model; student: Model } | null;
  trainSeqs: number[][];
  evalSeqs: number[][];
  settings: DistillSettings;
  resumeCp: ReturnType<typeof loadCheckpoint> | null;
  /** On resume: the checkpoint directory the run continues from (checkpoint/, or checkpoint.old/ after a kill between
   *  the renames of a save), its state.json checked against run.json. */
  resumeCheckpoint: string | null;
  progress: (phase: 'teacher samples' | 'distill', total: number) => ProgressSink;
  /** Files the result directory gets: the tokenizer and the conversion record. */
  copyFiles: { from: string; name: string }[];
}

/** How prepareDistill opens the models. */
export interface PrepareOptions {
  /** Open the models from their headers only (configs, tensor names and shapes: io/load.ts inspectModel), never their
   *  weights, and leave a resumed run's checkpoint to the engine once its state.json has been checked against
   *  run.json: the torch engine reads the files itself, and a 1B/8B teacher must not be read into this process. The
   *  teacher's weights are read only to draw teacher samples (no {data} and none cached). */
  headersOnly?: boolean;
  /** The engine computes the loss over row chunks (no whole micro-batch of logits in memory): the preflight limit on
   *  batch · seq · vocabulary does not apply. */
  chunkedLoss?: boolean;
  /** Merged into run.json (the torch engine records its options). */
  record?: Partial<RunRecord>;
}

/**
 * Check everything, open the models, build or reload the data, record run.json (with `record` merged in), then hand
 * it all to `run` (the engine). A synchronous failure before the first checkpoint removes what the run made.
 */
export function prepareDistill<R>(job: DistillJob, opts: PrepareOptions, run: (p: PreparedDistill) => R): R {
  const outDir = job.out;
  const progress = job.progress ?? (() => silentProgress);
  let saved: RunRecord | null = null;
  if (job.resume) {
    if (!existsSync(outDir)) throw new OptionError('resume', outDir, 'no such directory');
    saved = readRunRecord(outDir);
    for (const k of ['teacher', 'student', 'tokenizer', 'data', 'evalText', 'selfGenerate', 'samples'] as const) {
      if (job[k] !== undefined) throw new OptionError(k, undefined, `cannot be given with {resume} (the run's ${RUN_RECORD} fixes it)`);
    }
    // The sampling rule made the cached samples: the same value is accepted, another one refused.
    const was = savedRule(saved);
    for (const [k, v] of [['sampleTemperature', was.temperature], ['sampleTopP', was.topP]] as const) {
      if (job[k] !== undefined && job[k] !== v) throw new OptionError(k, job[k], `cannot change on {resume} (the run's teacher samples were drawn with ${v})`);
    }
  } else {
    if (!job.teacher) throw new OptionError('teacher', undefined, 'required (a model path)');
    if (!job.student) throw new OptionError('student', undefined, 'required (a model path)');
    if (job.data !== undefined && job.selfGenerate !== undefined) throw new OptionError('data', job.data, 'give {data} or {selfGenerate}, not both');
    if (job.samples !== undefined && (job.data !== undefined || job.selfGenerate !== undefined)) throw new OptionError('samples', undefined, 'give {samples}, {data} or {selfGenerate}, not two of them');
    if (job.samples !== undefined && job.samples.train.length === 0) throw new OptionError('samples', undefined, 'no training sequence');
    // The output first: never an input, and writable (its nearest existing ancestor a directory).
    checkOutput({ flag: '{out}', out: outDir, inputs: [job.teacher, job.student, job.tokenizer, job.data, job.evalText], kind: 'dir', overwrite: true, merge: true });
    if (existsSync(outDir) && readdirSync(outDir).length > 0) throw new OptionError('out', outDir, 'already exists and is not empty (use {resume} to continue it)');
  }
  const teacherPath = saved?.teacher ?? job.teacher!;
  const studentPath = saved?.student ?? job.student!;
  const tokenizerPath = saved?.tokenizer ?? job.tokenizer;
  const settings = resolveSettings(job.settings, saved ? (saved.settings as unknown as Record<string, unknown>) : undefined);
  checkSettings(settings, saved?.settings ?? null);
  if (job.selfGenerate !== undefined && !CHECKS.steps[0](job.selfGenerate)) throw new OptionError('selfGenerate', undefined, `expected a positive integer, got '${job.selfGenerate}'`);
  const rule = samplingRule(job, saved);
  // Cheap checks first: the texts are read before a model is loaded and long before any teacher sample is drawn.
  const dataPath = saved?.data ?? job.data;
  const evalText = saved?.evalText ?? job.evalText;
  if (dataPath && !evalText) throw new OptionError('evalText', undefined, 'required with {data}: a training corpus keeps no held-out part');
  const dataTexts = dataPath ? readTexts(dataPath, 'data') : null;
  const evalTexts = evalText ? readTexts(evalText, 'evalText') : null;
  const be = job.backend;
  const headersOnly = opts.headersOnly === true;
  let models: { teacher: Model; student: Model } | null = null;
  let teacherConfig: ModelConfig;
  let studentConfig: ModelConfig;
  let tok: Tokenizer | null;
  let resumeCp: ReturnType<typeof loadCheckpoint> | null = null;
  let resumeCheckpoint: string | null = null;
  // The teacher with its weights: for the cpu engine always; for a headers-only engine only to draw samples.
  let teacherModel: Model | null = null;
  let teacherTokenizer: Tokenizer | null = null;
  const openTeacher = (): Model => {
    if (!teacherModel) {
      const t = loadModel(teacherPath, { tokenizer: tokenizerPath });
      teacherModel = Model.fromWeights(t.config, t.weights, be, t.source);
      teacherTokenizer = t.tokenizer;
    }
    return teacherModel;
  };
  if (headersOnly) {
    const ti = inspectModel(teacherPath);
    teacherConfig = ti.config;
    tok = modelTokenizer(teacherPath, ti.format, ti.config.vocabSize, { tokenizer: tokenizerPath });
    if (job.resume) {
      // The checkpoint the engine will read must be this run's (the cpu engine checks the same after loadCheckpoint);
      // the student continues as the checkpoint's config and weights say.
      const cp = readCheckpointState(outDir);
      checkStateMatchesRun(cp.file, cp.state, join(outDir, RUN_RECORD), saved!.settings);
      studentConfig = inspectModel(cp.dir).config;
      resumeCheckpoint = cp.dir;
    } else {
      studentConfig = inspectModel(studentPath).config;
    }
  } else {
    const teacher = openTeacher();
    teacherConfig = teacher.config;
    tok = teacherTokenizer;
    resumeCp = job.resume ? loadCheckpoint(outDir) : null;
    resumeCheckpoint = resumeCp ? dirname(resumeCp.stateFile) : null;
    let student: Model;
    if (resumeCp) {
      checkStateMatchesRun(resumeCp.stateFile, resumeCp.state, join(outDir, RUN_RECORD), saved!.settings);
      student = Model.fromWeights(resumeCp.config, resumeCp.weights, be, checkpointDir(outDir));
    } else {
      // Only the teacher's tokenizer is used: the student is checked against it by vocabulary size.
      const s = loadModel(studentPath);
      student = Model.fromWeights(s.config, s.weights, be, s.source);
    }
    studentConfig = student.config;
    models = { teacher, student };
  }
  if (!tok) throw new OptionError('tokenizer', undefined, `${teacherPath}: no tokenizer (give a llama2.c tokenizer .bin or a tokenizer.json)`);
  checkDistillPlan(teacherConfig, studentConfig, settings, { teacher: teacherPath, student: studentPath }, { chunkedLoss: opts.chunkedLoss === true });
  let evalSeqs = evalTexts ? tokenizeTexts(evalTexts, tok, Math.min(settings.seq + 1, teacherConfig.maxPositions)) : null;
  if (evalSeqs && evalSeqs.length === 0) throw new OptionError('evalText', evalText, 'no text of at least 2 tokens');
  let trainSeqs = dataTexts ? tokenizeTexts(dataTexts, tok, settings.seq + 1) : null;
  if (trainSeqs && trainSeqs.length === 0) throw new OptionError('data', dataPath, 'no text of at least 2 tokens');
  const cached = job.resume ? readTeacherSamples(outDir, teacherConfig.vocabSize) : null;

  // From here on the run writes into its directory; a failure before the first checkpoint removes what it made.
  const created = !existsSync(outDir);
  mkdirSync(outDir, { recursive: true });
  try {
    // Data: a corpus, or teacher samples (cached in DIR so a resume trains on the same ones).
    const selfN = saved?.selfGenerate ?? job.samples?.train.length ?? job.selfGenerate ?? DISTILL_DEFAULTS.selfGenerate;
    if (!trainSeqs && cached) trainSeqs = cached.train;
    if (!trainSeqs) {
      // A headers-only engine reads the teacher's weights here, and only here (real-scale runs give {data}).
      const drawn = job.samples ?? drawTeacherSamples(openTeacher(), selfN, settings, rule, progress('teacher samples', selfN));
      writeTeacherSamples(outDir, drawn);
      trainSeqs = drawn.train;
      evalSeqs ??= drawn.eval;
    }
    evalSeqs ??= cached?.eval ?? null;
    if (!evalSeqs || evalSeqs.length === 0) throw new OptionError('evalText', undefined, 'required: no held-out text (training on a corpus keeps no held-out part)');
    if (!job.resume) {
      writeRunRecord(outDir, {
        teacher: teacherPath, student: studentPath, tokenizer: tokenizerPath, data: dataPath, selfGenerate: dataPath ? undefined : selfN,
        ...(dataPath ? {} : { sampleTemperature: rule.temperature, sampleTopP: rule.topP }), evalText, settings, ...opts.record,
      });
    }
    return run({
      outDir, teacherPath, studentPath, tokenizerPath, teacherConfig, studentConfig, models, trainSeqs, evalSeqs, settings, resumeCp, resumeCheckpoint, progress,
      copyFiles: resultFiles(teacherPath, tokenizerPath, studentPath),
    });
  } catch (e) {
    if (!job.resume && !existsSync(checkpointDir(outDir))) {
      if (created) rmSync(outDir, { recursive: true, force: true });
      else for (const n of readdirSync(outDir)) rmSync(join(outDir, n), { recursive: true, force: true });
    }
    throw e;
  }
}

/** The rule a saved run drew its samples with: run.json's, or, absent (a run made before the rule was recorded),
 *  plain sampling — what every run drew then, whatever today's default. */
function savedRule(saved: RunRecord): SamplingRule {
  return { temperature: saved.sampleTemperature ?? PLAIN_SAMPLING.temperature, topP: saved.sampleTopP ?? PLAIN_SAMPLING.topP };
}

/** The teacher samples' rule: the job's, or on resume the run's; checked in range, and refused with a corpus (there
 *  are no samples to draw). */
function samplingRule(job: DistillJob, saved: RunRecord | null): SamplingRule {
  if (!saved && job.data !== undefined) {
    for (const k of ['sampleTemperature', 'sampleTopP'] as const) {
      if (job[k] !== undefined) throw new OptionError(k, job[k], 'only with teacher samples ({selfGenerate}), not with {data}');
    }
  }
  const was = saved ? savedRule(saved) : null;
  const t = job.sampleTemperature ?? was?.temperature ?? DISTILL_DEFAULTS.sampleTemperature;
  const p = job.sampleTopP ?? was?.topP ?? DISTILL_DEFAULTS.sampleTopP;
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw new OptionError('sampleTemperature', undefined, `expected a positive number (0 would draw every sample greedily, all the same), got '${t}'`);
  if (typeof p !== 'number' || !(p > 0 && p <= 1)) throw new OptionError('sampleTopP', undefined, `expected a number in (0, 1], got '${p}'`);
  return { temperature: t, topP: p };
}

function train(
  job: DistillJob, outDir: string, teacher: Model, student: Model, trainSeqs: number[][], evalSeqs: number[][], settings: DistillSettings,
  teacherPath: string, tokenizerPath: string | undefined, studentPath: string, resumeCp: ReturnType<typeof loadCheckpoint> | null,
  progress: (phase: 'teacher samples' | 'distill', total: number) => ProgressSink,
): DistillJobResult {
  const result = distill({
    teacher,
    student,
    train: new Batcher(trainSeqs, settings.seq, settings.batch, settings.seed),
    evalSeqs,
    settings,
    outDir,
    copyFiles: resultFiles(teacherPath, tokenizerPath, studentPath),
    resume: resumeCp ? { state: resumeCp.state, moments: resumeCp.moments, adamStep: resumeCp.adamStep } : undefined,
    progress: progress('distill', settings.steps * settings.batch * settings.accum * settings.seq),
    onLog: job.onLog,
  });
  return { out: outDir, ppl: result.ppl, kl: result.kl, tokens: result.tokens, student: result.student };
}

/** The tokenizer files and the student's conversion record (spectra for `mla compare`), copied into the result. */
function resultFiles(teacherPath: string, tokenizerPath: string | undefined, studentPath: string): { from: string; name: string }[] {
  return [
    ...tokenizerFiles(teacherPath, tokenizerPath),
    ...(existsSync(join(studentPath, CONVERSION_RECORD)) ? [{ from: join(studentPath, CONVERSION_RECORD), name: CONVERSION_RECORD }] : []),
  ];
}

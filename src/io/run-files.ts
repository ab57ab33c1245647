// The files a run leaves in its directories, as one typed schema: conversion.json (how a student was made),
// and a distillation directory's run.json (what to resume), log.jsonl (the curve), teacher-samples.json (the
// training data drawn from the teacher) and checkpoint/state.json (where the checkpoint stands and with which
// settings). Every reader validates and names the file and the field; every whole-file writer is atomic.

import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, formatError, userFsError } from '../errors.js';
import { writeFileAtomic } from './binfile.js';
import { Fields, isObject, parseJsonLines, readJsonObject, type JsonObject } from './json.js';
import { tempNameFor } from './output.js';
import { readUtf8File } from './text.js';

export const CONVERSION_RECORD = 'conversion.json';
export const RUN_RECORD = 'run.json';
export const LOG_FILE = 'log.jsonl';
export const SAMPLES_FILE = 'teacher-samples.json';
export const STATE_FILE = 'state.json';

/** Write a text file atomically (temporary name, then rename): a crash or a full disk leaves the old file or none. */
export function writeTextAtomic(file: string, text: string): void {
  writeFileAtomic(file, tempNameFor(file), (write) => write(Buffer.from(text, 'utf8')));
}

// ---------------------------------------------------------------------------------------------------------------
// Distillation settings (run.json and state.json carry them)

export type TrainScope = 'attention' | 'all';

export interface DistillSettings {
  steps: number;
  batch: number;
  seq: number;
  accum: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  clip: number;
  weightDecay: number;
  klWeight: number;
  ceWeight: number;
  temperature: number;
  train: TrainScope;
  seed: number;
  evalEvery: number;
  checkpointEvery: number;
}

/** Settings that fix the training trajectory: a resumed run must use the checkpoint's values. */
export const TRAJECTORY_SETTINGS = ['batch', 'seq', 'accum', 'seed', 'train', 'klWeight', 'ceWeight', 'temperature'] as const;

/** Validate a settings object (every field present and in range). */
export function parseSettings(f: Fields): DistillSettings {
  const nonNeg = (k: string): number => {
    const v = f.obj[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw f.error(k, `expected a number ≥ 0, got ${JSON.stringify(v) ?? 'nothing'}`);
    return v;
  };
  const train = f.str('train');
  if (train !== 'all' && train !== 'attention') throw f.error('train', `expected "all" or "attention", got "${train}"`);
  return {
    steps: f.int('steps'), batch: f.int('batch'), seq: f.int('seq'), accum: f.int('accum'), lr: f.pos('lr'), warmup: f.int('warmup', 0),
    minLrRatio: nonNeg('minLrRatio'), clip: nonNeg('clip'), weightDecay: nonNeg('weightDecay'), klWeight: nonNeg('klWeight'),
    ceWeight: nonNeg('ceWeight'), temperature: f.pos('temperature'), train, seed: f.int('seed', 0), evalEvery: f.int('evalEvery'),
    checkpointEvery: f.int('checkpointEvery'),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// run.json

export interface RunRecord {
  teacher: string;
  student: string;
  tokenizer?: string;
  data?: string;
  selfGenerate?: number;
  /** How the teacher samples were drawn (absent in runs made before these existed: 1 and 1). */
  sampleTemperature?: number;
  sampleTopP?: number;
  evalText?: string;
  settings: DistillSettings;
  /** The torch engine's options when the run uses it (train/torch-engine.ts): resume keeps the engine. */
  torch?: Record<string, unknown>;
}

export function readRunRecord(dir: string): RunRecord {
  const file = join(dir, RUN_RECORD);
  if (!existsSync(file)) throw new UserError(`${dir}: no ${RUN_RECORD} (not a distillation directory)`);
  const f = new Fields(file, readJsonObject(file));
  const optStr = (k: string): string | undefined => (f.has(k) ? f.str(k) : undefined);
  const settings = f.optObj('settings');
  if (!settings) throw f.error('settings', 'missing: expected the run\'s settings object');
  return {
    teacher: f.str('teacher'), student: f.str('student'), tokenizer: optStr('tokenizer'), data: optStr('data'),
    selfGenerate: f.has('selfGenerate') ? f.int('selfGenerate') : undefined, evalText: optStr('evalText'),
    sampleTemperature: f.has('sampleTemperature') ? f.pos('sampleTemperature') : undefined,
    sampleTopP: f.has('sampleTopP') ? topP(f) : undefined,
    settings: parseSettings(settings),
    torch: f.optObj('torch')?.obj,
  };
}

/** A nucleus mass: in (0, 1]. */
function topP(f: Fields): number {
  const v = f.pos('sampleTopP');
  if (v > 1) throw f.error('sampleTopP', `expected a number in (0, 1], got ${v}`);
  return v;
}

export function writeRunRecord(dir: string, r: RunRecord): void {
  writeTextAtomic(join(dir, RUN_RECORD), JSON.stringify(r, null, 2) + '\n');
}

// ---------------------------------------------------------------------------------------------------------------
// log.jsonl

export interface LogLine {
  step: number;
  tokens: number;
  lr?: number;
  loss?: number;
  kl?: number;
  ce?: number;
  grad_norm?: number;
  tokens_per_s?: number;
  eval_ppl?: number;
  eval_kl?: number;
}

const LOG_NUMBERS = ['lr', 'loss', 'kl', 'ce', 'grad_norm', 'tokens_per_s', 'eval_ppl', 'eval_kl'] as const;

/**
 * The log of a run directory (null when there is none). Every complete line must be a log object; a last line
 * without its newline is what a kill during an append leaves, and is dropped.
 */
export function readLog(dir: string): LogLine[] | null {
  const file = join(dir, LOG_FILE);
  if (!existsSync(file)) return null;
  const text = readUtf8File(file);
  const lines = text.split('\n');
  const torn = lines.pop();
  if (torn !== undefined && torn !== '') {
    try {
      JSON.parse(torn);
      lines.push(torn);
    } catch {
      /* torn by a kill: drop it */
    }
  }
  const out: LogLine[] = [];
  for (const { value: o, where } of parseJsonLines(lines, file)) {
    if (!isObject(o)) throw new UserError(`${where}: expected a JSON object`);
    const f = new Fields(where, o);
    const l: LogLine = { step: f.int('step', 0), tokens: f.int('tokens', 0) };
    for (const k of LOG_NUMBERS) {
      const v = o[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number') throw f.error(k, `expected a number, got ${JSON.stringify(v)}`);
      l[k] = v;
    }
    out.push(l);
  }
  return out;
}

export function writeLog(dir: string, lines: readonly LogLine[]): void {
  writeTextAtomic(join(dir, LOG_FILE), lines.map((l) => JSON.stringify(l) + '\n').join(''));
}

/** Append one line (appends are not atomic: readLog drops a torn last line). */
export function appendLog(dir: string, line: LogLine): void {
  try {
    appendFileSync(join(dir, LOG_FILE), JSON.stringify(line) + '\n');
  } catch (e) {
    throw userFsError(e);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// teacher-samples.json

export interface TeacherSamples {
  train: number[][];
  eval: number[][];
}

/** Read the cached samples; every id must be an integer token id below `vocabSize`. */
export function readTeacherSamples(dir: string, vocabSize: number): TeacherSamples | null {
  const file = join(dir, SAMPLES_FILE);
  if (!existsSync(file)) return null;
  const o = readJsonObject(file);
  const seqs = (k: 'train' | 'eval'): number[][] => {
    const v = o[k];
    if (!Array.isArray(v)) throw formatError(file, k, 'expected an array of token-id arrays');
    v.forEach((s, i) => {
      if (!Array.isArray(s)) throw formatError(file, `${k}[${i}]`, 'expected an array of token ids');
      for (let j = 0; j < s.length; j++) {
        const id = s[j] as unknown;
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw formatError(file, `${k}[${i}][${j}]`, `expected a token id in 0..${vocabSize - 1}, got ${JSON.stringify(id)}`);
        }
      }
    });
    return v as number[][];
  };
  const train = seqs('train');
  if (train.length === 0) throw formatError(file, 'train', 'expected at least one sequence');
  return { train, eval: seqs('eval') };
}

export function writeTeacherSamples(dir: string, s: TeacherSamples): void {
  writeTextAtomic(join(dir, SAMPLES_FILE), JSON.stringify(s));
}

// ---------------------------------------------------------------------------------------------------------------
// checkpoint/state.json

export interface TrainState {
  version: 1;
  step: number;
  tokens: number;
  /** The settings the checkpoint was trained with: --resume checks them against run.json. */
  settings: DistillSettings;
}

export function readTrainState(file: string): TrainState {
  const f = new Fields(file, readJsonObject(file));
  const version = f.int('version');
  if (version !== 1) throw f.error('version', `expected 1, got ${version}`);
  const settings = f.optObj('settings');
  if (!settings) throw f.error('settings', 'missing: expected the settings object');
  return { version: 1, step: f.int('step', 0), tokens: f.int('tokens', 0), settings: parseSettings(settings) };
}

export function stateJson(s: TrainState): string {
  return JSON.stringify(s, null, 2) + '\n';
}

/** A checkpoint belongs to the run when it was trained with the run's trajectory settings. */
export function checkStateMatchesRun(stateFile: string, state: TrainState, runFile: string, run: DistillSettings): void {
  for (const k of TRAJECTORY_SETTINGS) {
    if (state.settings[k] !== run[k]) {
      throw new UserError(`${stateFile}: settings.${k}: ${JSON.stringify(state.settings[k])}, but ${runFile} says ${JSON.stringify(run[k])}: the checkpoint is not from this run`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// conversion.json

export interface ConversionLayer {
  layer: number;
  kind: string;
  kvRank: number | null;
  ropeDim: number | null;
  energyKept: number;
  spectrum: number[];
}

export interface ConversionRecord {
  source?: string;
  rope_method: string;
  basis: string;
  nope_init?: string;
  nope_keys?: string;
  compression?: number;
  layers: ConversionLayer[];
  [key: string]: unknown;
}

/** The conversion record of a model directory (null when it has none); validated. */
export function readConversionRecord(dir: string): ConversionRecord | null {
  const file = join(dir, CONVERSION_RECORD);
  if (!existsSync(file)) return null;
  const o: JsonObject = readJsonObject(file);
  const f = new Fields(file, o);
  f.str('rope_method');
  f.str('basis');
  const layers = o.layers;
  if (!Array.isArray(layers)) throw f.error('layers', 'expected an array of per-layer objects');
  layers.forEach((l, i) => {
    if (!isObject(l)) throw f.error(`layers[${i}]`, 'expected an object');
    const lf = new Fields(file, l, `layers[${i}]`);
    lf.int('layer', 0);
    lf.str('kind');
    if (typeof l.energyKept !== 'number') throw lf.error('energyKept', 'expected a number');
    if (!Array.isArray(l.spectrum) || l.spectrum.some((x) => typeof x !== 'number')) throw lf.error('spectrum', 'expected an array of numbers');
  });
  return o as ConversionRecord;
}

/** Read a file the caller knows is there (for records whose reader wants raw text). */
export function readRunText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw userFsError(e);
  }
}

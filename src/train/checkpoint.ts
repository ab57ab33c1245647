// Training checkpoints: DIR/checkpoint/ holds the student (a model directory: io/deepseek.ts saveModelDir), the AdamW moments and state.json.
// Written as DIR/checkpoint.new, then swapped in with renames, so a killed run always leaves one whole checkpoint.

import { existsSync, renameSync, rmSync } from 'node:fs';
import { STATE_FILE, readTrainState, stateJson, type TrainState } from '../io/run-files.js';
import { join } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { saveModelDir } from '../io/deepseek.js';
import { loadModel } from '../io/load.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { assertFiniteWeights } from '../io/finite.js';
import { OptionError, UserError } from '../errors.js';
import type { AdamW } from './optimizer.js';

export type { TrainState } from '../io/run-files.js';

export function checkpointDir(dir: string): string {
  return join(dir, 'checkpoint');
}

/** Save student + optimizer + state atomically. */
export function saveCheckpoint(
  dir: string, config: ModelConfig, weights: Map<string, Tensor>, opt: AdamW, state: TrainState,
  copyFiles: { from: string; name: string }[],
): void {
  const final = checkpointDir(dir);
  const fresh = `${final}.new`;
  const old = `${final}.old`;
  rmSync(fresh, { recursive: true, force: true });
  try {
    writeFresh(fresh, config, weights, opt, state, copyFiles);
  } catch (e) {
    // A full disk (or any failure) leaves the last whole checkpoint and no half-written checkpoint.new/.
    rmSync(fresh, { recursive: true, force: true });
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
  if (existsSync(final)) renameSync(final, old);
  renameSync(fresh, final);
  rmSync(old, { recursive: true, force: true });
}

function writeFresh(
  fresh: string, config: ModelConfig, weights: Map<string, Tensor>, opt: AdamW, state: TrainState, copyFiles: { from: string; name: string }[],
): void {
  saveModelDir(fresh, config, weights, { copyFiles, extraFiles: { [STATE_FILE]: stateJson(state) } });
  const moments: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const [name, m] of opt.m) {
    moments.push({ name: `m.${name}`, shape: [...m.shape], data: Float32Array.from(m.data) });
    moments.push({ name: `v.${name}`, shape: [...m.shape], data: Float32Array.from(opt.v.get(name)!.data) });
  }
  writeSafetensors(join(fresh, 'optimizer.safetensors'), moments, { adam_step: String(opt.step) });
}

export interface LoadedCheckpoint {
  config: ModelConfig;
  weights: Map<string, Tensor>;
  state: TrainState;
  moments: Map<string, Tensor>;
  adamStep: number;
  /** Where the state came from (for messages). */
  stateFile: string;
}

/** The last whole checkpoint of a run directory (checkpoint/, or checkpoint.old/ when a kill fell between the two
 *  renames of a save) and its validated state.json; no weight is read. */
export function readCheckpointState(dir: string): { dir: string; file: string; state: TrainState } {
  let cp = checkpointDir(dir);
  if (!existsSync(join(cp, STATE_FILE)) && existsSync(join(`${cp}.old`, STATE_FILE))) cp = `${cp}.old`;
  const file = join(cp, STATE_FILE);
  if (!existsSync(file)) throw new OptionError('resume', dir, `no checkpoint (expected ${file})`);
  return { dir: cp, file, state: readTrainState(file) };
}

/** Load the last whole checkpoint of a run directory. */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const { dir: cp, file: stateFile, state } = readCheckpointState(dir);
  // The DeepSeek-V3 layout, or an all-GQA student's own HF layout (io/deepseek.ts modelDirConfigJson).
  const { config, weights } = loadModel(cp);
  const opt = readSafetensors(join(cp, 'optimizer.safetensors'));
  const moments = new Map<string, Tensor>();
  for (const [name, t] of opt.tensors) {
    // NaN moments would turn the first resumed update into NaN weights ("the student diverged"): name them here.
    assertFiniteWeights(join(cp, 'optimizer.safetensors'), name, t.shape, t.data);
    moments.set(name, new Tensor(t.shape, t.data));
  }
  const adamStep = Number(opt.metadata?.adam_step ?? state.step);
  if (!Number.isInteger(adamStep) || adamStep < 0) throw new UserError(`${join(cp, 'optimizer.safetensors')}: __metadata__.adam_step: expected an integer ≥ 0, got ${opt.metadata?.adam_step}`);
  return { config, weights, state, moments, adamStep, stateFile };
}

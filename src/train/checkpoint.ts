// Training checkpoints: DIR/checkpoint/ holds the student (DeepSeek-V3 layout), the AdamW moments and state.json.
// Written as DIR/checkpoint.new, then swapped in with renames, so a killed run always leaves one whole checkpoint.

import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { saveModelDir, loadDeepseekModel } from '../io/deepseek.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { OptionError, UserError } from '../errors.js';
import type { AdamW } from './optimizer.js';

export interface TrainState {
  version: 1;
  step: number;
  tokens: number;
  /** The run's settings, so --resume continues with the same ones. */
  settings: Record<string, unknown>;
}

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
  saveModelDir(fresh, config, weights, { copyFiles });
  const moments: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const [name, m] of opt.m) {
    moments.push({ name: `m.${name}`, shape: [...m.shape], data: Float32Array.from(m.data) });
    moments.push({ name: `v.${name}`, shape: [...m.shape], data: Float32Array.from(opt.v.get(name)!.data) });
  }
  writeSafetensors(join(fresh, 'optimizer.safetensors'), moments, { adam_step: String(opt.step) });
  writeFileSync(join(fresh, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  rmSync(old, { recursive: true, force: true });
  if (existsSync(final)) renameSync(final, old);
  renameSync(fresh, final);
  rmSync(old, { recursive: true, force: true });
}

export interface LoadedCheckpoint {
  config: ModelConfig;
  weights: Map<string, Tensor>;
  state: TrainState;
  moments: Map<string, Tensor>;
  adamStep: number;
}

/** Load the last whole checkpoint of a run directory. */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  let cp = checkpointDir(dir);
  if (!existsSync(join(cp, 'state.json')) && existsSync(join(`${cp}.old`, 'state.json'))) cp = `${cp}.old`;
  const stateFile = join(cp, 'state.json');
  if (!existsSync(stateFile)) throw new OptionError('resume', dir, `no checkpoint (expected ${stateFile})`);
  let state: TrainState;
  try {
    state = JSON.parse(readFileSync(stateFile, 'utf8')) as TrainState;
  } catch {
    throw new UserError(`${stateFile}: not valid JSON`);
  }
  if (state.version !== 1 || typeof state.step !== 'number') throw new UserError(`${stateFile}: version/step: expected version 1 with a step number`);
  const { config, weights } = loadDeepseekModel(cp);
  const opt = readSafetensors(join(cp, 'optimizer.safetensors'));
  const moments = new Map<string, Tensor>();
  for (const [name, t] of opt.tensors) moments.set(name, new Tensor(t.shape, t.data));
  return { config, weights, state, moments, adamStep: Number(opt.metadata?.adam_step ?? state.step) };
}

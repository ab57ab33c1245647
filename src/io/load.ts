// One entry point for every model the tool reads: an HF llama-family directory, our DeepSeek-V3-layout
// directory (model_type deepseek_v3, handled by deepseek.ts), or a llama2.c .bin checkpoint.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { OptionError, UserError } from '../errors.js';
import { withFile } from './binfile.js';
import { loadHfModel, type LoadedModel } from './hf.js';
import { loadDeepseekModel } from './deepseek.js';
import { loadLlama2c } from './llama2c.js';
import { loadLlama2cTokenizer } from './llama2c-tokenizer.js';
import { Fields, readJsonObject } from './json.js';
import { loadHfTokenizer, type Tokenizer } from './tokenizer.js';

export type ModelFormat = 'hf' | 'deepseek_v3' | 'llama2c';

export interface LoadOptions {
  /** Tokenizer to use: a llama2.c tokenizer .bin, a tokenizer.json, or a directory holding one. */
  tokenizer?: string;
}

export interface Loaded {
  config: ModelConfig;
  weights: Map<string, Tensor>;
  /** null when none was found or given (commands that need text say so: infer/open.ts requireTokenizer). */
  tokenizer: Tokenizer | null;
  /** The path the model came from, for messages. */
  source: string;
  format: ModelFormat;
}

/** A tokenizer from an explicit path: *.bin → llama2.c (needs the model's vocab size), else tokenizer.json. */
export function loadTokenizerPath(path: string, vocabSize: number): Tokenizer {
  if (!existsSync(path)) throw new OptionError('tokenizer', path, 'tokenizer not found');
  if (!statSync(path).isFile() && !statSync(path).isDirectory()) throw new OptionError('tokenizer', path, 'not a regular file or directory');
  if (statSync(path).isFile() && path.endsWith('.bin')) return loadLlama2cTokenizer(path, vocabSize);
  return loadHfTokenizer(path);
}

/** Load a model directory or llama2.c file, with its tokenizer when one is given or present beside it. */
export function loadModel(path: string, opts: LoadOptions = {}): Loaded {
  if (!existsSync(path)) throw new UserError(`${path}: no such file or directory`);
  const st = statSync(path);
  // Checked before opening: opening a FIFO blocks until a writer comes, a device never ends.
  if (!st.isDirectory() && !st.isFile()) throw new UserError(`${path}: not a model directory or file (a FIFO, socket or device)`);
  if (st.isFile() && isGguf(path)) {
    throw new UserError(`${path}: a GGUF file (what mla export writes for llama.cpp); this tool reads HF / DeepSeek-V3 directories and llama2.c .bin checkpoints: give the model it was exported from`);
  }
  let m: LoadedModel;
  let format: ModelFormat;
  let tokenizer: Tokenizer | null = null;
  if (statSync(path).isDirectory()) {
    const cfgFile = join(path, 'config.json');
    const modelType = new Fields(cfgFile, readJsonObject(cfgFile)).str('model_type');
    format = modelType === 'deepseek_v3' ? 'deepseek_v3' : 'hf';
    m = format === 'deepseek_v3' ? loadDeepseekModel(path) : loadHfModel(path);
    if (!opts.tokenizer && existsSync(join(path, 'tokenizer.json'))) tokenizer = loadHfTokenizer(path);
    // A model converted from a llama2.c checkpoint carries its tokenizer as tokenizer.bin.
    else if (!opts.tokenizer && existsSync(join(path, 'tokenizer.bin'))) tokenizer = loadLlama2cTokenizer(join(path, 'tokenizer.bin'), m.config.vocabSize);
  } else if (path.endsWith('.safetensors') || path.endsWith('.json')) {
    throw new UserError(`${path}: give the checkpoint directory (with config.json), not one of its files`);
  } else {
    format = 'llama2c';
    m = loadLlama2c(path);
  }
  checkSpecialTokens(path, m.config);
  if (opts.tokenizer) tokenizer = loadTokenizerPath(opts.tokenizer, m.config.vocabSize);
  if (tokenizer && tokenizer.vocabSize > m.config.vocabSize) {
    throw new UserError(
      `${opts.tokenizer ?? path}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${m.config.vocabSize}`,
    );
  }
  return { config: m.config, weights: m.weights, tokenizer, source: path, format };
}

/** Whether a file starts with the GGUF magic. */
function isGguf(path: string): boolean {
  return withFile(path, (f) => f.size >= 4 && Buffer.from(f.read(0, 4)).toString('latin1') === 'GGUF');
}

/** bos/eos ids must lie in the vocabulary (else the first forward pass fails on an embedding row that is not there). */
function checkSpecialTokens(path: string, c: ModelConfig): void {
  const where = statSync(path).isDirectory() ? join(path, 'config.json') : path;
  for (const [field, id] of [['bos_token_id', c.bosTokenId], ['eos_token_id', c.eosTokenId]] as const) {
    if (id !== null && id >= c.vocabSize) throw new UserError(`${where}: ${field}: expected a token id below vocab_size ${c.vocabSize}, got ${id}`);
  }
}

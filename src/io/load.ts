// One entry point for every model the tool reads: an HF llama-family directory, our DeepSeek-V3-layout
// directory (model_type deepseek_v3, handled by deepseek.ts), or a llama2.c .bin checkpoint.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { OptionError, UserError } from '../errors.js';
import { withFile } from './binfile.js';
import { loadHfModel, readHfConfig, type LoadedModel } from './hf.js';
import { loadDeepseekModel, readDeepseekConfig } from './deepseek.js';
import { loadLlama2c, readLlama2cConfig } from './llama2c.js';
import { modelTensors } from '../model/weights.js';
import { bytesPerElement, type StorageDtype } from './dtype.js';
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
  const format = detectFormat(path);
  let m: LoadedModel;
  if (format !== 'llama2c') m = format === 'deepseek_v3' ? loadDeepseekModel(path) : loadHfModel(path);
  else m = loadLlama2c(path);
  checkSpecialTokens(path, m.config);
  const tokenizer = modelTokenizer(path, format, m.config.vocabSize, opts);
  return { config: m.config, weights: m.weights, tokenizer, source: path, format };
}

/**
 * The tokenizer of a model: `opts.tokenizer` when given, else the tokenizer.json (or, for a model converted from a
 * llama2.c checkpoint, the tokenizer.bin) in its directory; null when there is none. It may not have more tokens than
 * the model's vocabulary. Reads no weights (a model opened with inspectModel gets its tokenizer here).
 */
export function modelTokenizer(path: string, format: ModelFormat, vocabSize: number, opts: LoadOptions = {}): Tokenizer | null {
  let tokenizer: Tokenizer | null = null;
  if (opts.tokenizer) tokenizer = loadTokenizerPath(opts.tokenizer, vocabSize);
  else if (format !== 'llama2c' && existsSync(join(path, 'tokenizer.json'))) tokenizer = loadHfTokenizer(path);
  else if (format !== 'llama2c' && existsSync(join(path, 'tokenizer.bin'))) tokenizer = loadLlama2cTokenizer(join(path, 'tokenizer.bin'), vocabSize);
  if (tokenizer && tokenizer.vocabSize > vocabSize) {
    throw new UserError(`${opts.tokenizer ?? path}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${vocabSize}`);
  }
  return tokenizer;
}

/** What the weights of a model are, from the file headers only. */
export interface WeightSummary {
  /** Parameters of the tensors the model uses (tied embeddings once). */
  parameters: number;
  /** Bytes those tensors take in their stored dtypes. */
  bytes: number;
  /** Parameters per stored dtype, e.g. { BF16: 1235814400 }. */
  dtypes: Partial<Record<StorageDtype, number>>;
}

export interface Inspected {
  config: ModelConfig;
  weights: WeightSummary;
  source: string;
  format: ModelFormat;
}

/**
 * A model's config and weight summary from headers only (safetensors JSON headers, the llama2.c 28-byte header):
 * no tensor data is read, so it costs milliseconds and no memory at any model size. Every tensor the config needs must
 * be present with its shape (the same check as loading); values are not checked (that needs the data).
 */
export function inspectModel(path: string): Inspected {
  const format = detectFormat(path);
  let config: ModelConfig;
  let headers: Map<string, { shape: number[]; dtype: StorageDtype; file: string }> | null = null;
  if (format === 'llama2c') config = readLlama2cConfig(path);
  else ({ config, headers } = format === 'deepseek_v3' ? readDeepseekConfig(path) : readHfConfig(path));
  checkSpecialTokens(path, config);
  const weights: WeightSummary = { parameters: 0, bytes: 0, dtypes: {} };
  for (const spec of modelTensors(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    let dtype: StorageDtype = 'F32';
    if (headers) {
      const h = headers.get(spec.name);
      if (!h) throw new UserError(`${path}: tensor ${spec.name}: missing (expected shape [${spec.shape.join(', ')}])`);
      if (h.shape.length !== spec.shape.length || h.shape.some((d, i) => d !== spec.shape[i])) {
        throw new UserError(`${h.file}: tensor ${spec.name}: expected shape [${spec.shape.join(', ')}], found [${h.shape.join(', ')}]`);
      }
      dtype = h.dtype;
    }
    weights.parameters += n;
    weights.bytes += n * bytesPerElement[dtype];
    weights.dtypes[dtype] = (weights.dtypes[dtype] ?? 0) + n;
  }
  return { config, weights, source: path, format };
}

/** Which reader a path needs; refuses what no reader takes (missing, FIFO, GGUF, a file of a directory). */
function detectFormat(path: string): ModelFormat {
  if (!existsSync(path)) throw new UserError(`${path}: no such file or directory`);
  const st = statSync(path);
  // Checked before opening: opening a FIFO blocks until a writer comes, a device never ends.
  if (!st.isDirectory() && !st.isFile()) throw new UserError(`${path}: not a model directory or file (a FIFO, socket or device)`);
  if (st.isFile() && isGguf(path)) {
    throw new UserError(`${path}: a GGUF file (what mla export writes for llama.cpp); this tool reads HF / DeepSeek-V3 directories and llama2.c .bin checkpoints: give the model it was exported from`);
  }
  if (st.isDirectory()) {
    const cfgFile = join(path, 'config.json');
    return new Fields(cfgFile, readJsonObject(cfgFile)).str('model_type') === 'deepseek_v3' ? 'deepseek_v3' : 'hf';
  }
  if (path.endsWith('.safetensors') || path.endsWith('.json')) {
    throw new UserError(`${path}: give the checkpoint directory (with config.json), not one of its files`);
  }
  return 'llama2c';
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

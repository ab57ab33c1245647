// HF Llama-family checkpoints (llama, qwen2, mistral): a directory with config.json and model.safetensors,
// or shards listed by model.safetensors.index.json. Loads to f32 Tensors under the HF names; saves the same
// layout (used by tests and round trips). Every expected tensor is checked by name and shape.
// Legend: V vocab, C hidden, I intermediate, H heads, Hkv kv heads, D head dim.

import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Tensor, sizeOf } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { modelTensors, type TensorSpec } from '../model/weights.js';
import { UserError } from '../errors.js';
import { hfConfigJson, parseHfConfig, qkNormError, uniformGqaLayer } from './hfconfig.js';
import { Fields, readJsonObject } from './json.js';
import { assertFiniteWeights } from './finite.js';
import { readSafetensorsHeader, tensorOf, writeSafetensors, type SafetensorsDtype, type SafetensorsTensor } from './safetensors.js';
import { BinFile } from './binfile.js';
import { bytesPerElement } from './dtype.js';
import { FileSource, checkHalf, type StoredRef } from './source.js';
import { replaceDir, tempNameFor } from './output.js';

export interface LoadedModel {
  config: ModelConfig;
  /** f32 tensors under HF names, e.g. model.layers.0.self_attn.q_proj.weight (H·D, C). */
  weights: Map<string, Tensor>;
}

/** One tensor read from a checkpoint, with the file it came from (for error messages). F16/BF16 tensors keep their
 *  16-bit `bits` and widen to `data` only when it is read. */
export interface CheckpointTensor {
  shape: number[];
  readonly data: Float32Array;
  dtype: SafetensorsDtype;
  bits?: Uint16Array;
  file: string;
}

function checkpointTensor(t: SafetensorsTensor, file: string): CheckpointTensor {
  return {
    shape: t.shape,
    dtype: t.dtype,
    ...(t.bits ? { bits: t.bits } : {}),
    file,
    get data(): Float32Array {
      return t.data;
    },
  };
}

/** Finite-value check on the stored values: F16/BF16 bit patterns directly (an all-ones exponent is ±∞ or NaN),
 *  so a half checkpoint is never widened to f32 just to be checked. */
function assertFiniteCheckpoint(file: string, name: string, t: SafetensorsTensor): void {
  if (!t.bits) {
    assertFiniteWeights(file, name, t.shape, t.data);
    return;
  }
  checkHalf(file, name, t.shape, t.dtype, t.bits, 0);
}

/** The weight as a Tensor in its file dtype (bf16/f16 bits adopted, no f32 copy). */
export function checkpointWeight(shape: readonly number[], t: CheckpointTensor): Tensor {
  if (t.bits) return Tensor.half(shape, t.dtype === 'BF16' ? 'bf16' : 'f16', t.bits);
  return new Tensor(shape, t.data);
}

/**
 * Names and shapes of every tensor of a llama-family model (all layers GQA), in save order:
 * embed_tokens (V, C); per layer input_layernorm (C), q_proj (H·D, C), k_proj/v_proj (Hkv·D, C),
 * o_proj (C, H·D), [q/k/v biases], post_attention_layernorm (C), gate/up (I, C), down (C, I);
 * norm (C); lm_head (V, C) unless tied.
 */
export function expectedGqaTensors(config: ModelConfig): TensorSpec[] {
  for (const l of config.layers) {
    if (l.kind !== 'gqa') throw new Error('expectedGqaTensors: every layer must be GQA');
  }
  return modelTensors(config);
}

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

/** Reject shard names that could leave the checkpoint directory. */
function checkShardName(index: string, name: string, shard: string): void {
  if (shard === '' || shard !== basename(shard) || shard === '.' || shard === '..') {
    throw new UserError(`${index}: weight_map.${name}: expected a file name in the same directory, got "${shard}"`);
  }
}

/** A tensor as a header describes it: shape, stored dtype, the file holding it. */
export interface HeaderTensor {
  shape: number[];
  dtype: SafetensorsDtype;
  file: string;
}

/** Names and shapes of every tensor of a checkpoint directory, from the headers only (no tensor data is read). */
export function checkpointShapes(dir: string): Map<string, HeaderTensor> {
  const out = new Map<string, HeaderTensor>();
  const single = join(dir, SINGLE);
  const index = join(dir, INDEX);
  const add = (file: string): void => {
    for (const e of readSafetensorsHeader(file).entries) out.set(e.name, { shape: e.shape, dtype: e.dtype, file });
  };
  if (existsSync(single)) {
    add(single);
  } else if (existsSync(index)) {
    const map = new Fields(index, readJsonObject(index)).optObj('weight_map');
    const shards = new Set(Object.values(map?.obj ?? {}).filter((v): v is string => typeof v === 'string'));
    for (const shard of shards) {
      checkShardName(index, '(shard)', shard);
      if (existsSync(join(dir, shard))) add(join(dir, shard));
    }
  }
  return out;
}

/**
 * Check a config's sizes against the tensors present, before any allocation sized by the config: a config saying
 * num_hidden_layers 1e9 or hidden_size 1e12 would otherwise build a billion layer records or allocate until the heap
 * dies. Compares num_hidden_layers with the layer indices in the tensor names, and hidden_size / vocab_size with the
 * embedding's shape (V, C). Checks only what is present (a missing embedding is reported later, by name).
 */
export function checkConfigSizes(cfgFile: string, raw: Record<string, unknown>, shapes: Map<string, HeaderTensor>): void {
  const f = new Fields(cfgFile, raw);
  let maxLayer = -1;
  for (const name of shapes.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) maxLayer = Math.max(maxLayer, Number(m[1]));
  }
  if (typeof raw.num_hidden_layers === 'number' && shapes.size > 0 && raw.num_hidden_layers !== maxLayer + 1) {
    throw f.error('num_hidden_layers', `expected ${maxLayer + 1} (the checkpoint holds tensors for layers 0..${maxLayer}), got ${raw.num_hidden_layers}`);
  }
  const emb = shapes.get('model.embed_tokens.weight');
  if (emb && emb.shape.length === 2) {
    const [V, C] = emb.shape as [number, number];
    if (typeof raw.hidden_size === 'number' && raw.hidden_size !== C) {
      throw f.error('hidden_size', `expected ${C} (model.embed_tokens.weight is [${V}, ${C}]), got ${raw.hidden_size}`);
    }
    if (typeof raw.vocab_size === 'number' && raw.vocab_size !== V) {
      throw f.error('vocab_size', `expected ${V} (model.embed_tokens.weight is [${V}, ${C}]), got ${raw.vocab_size}`);
    }
  }
}

/**
 * Where every tensor of a checkpoint directory (single file or sharded) lies, from the headers and the index only
 * (no tensor data is read): the index is checked (shard names inside the directory, every shard present, every listed
 * tensor in its shard). Entries come shard by shard, in file order.
 */
export function checkpointRefs(dir: string): Map<string, StoredRef> {
  const out = new Map<string, StoredRef>();
  const single = join(dir, SINGLE);
  const index = join(dir, INDEX);
  const addFile = (file: string, keep: (name: string) => boolean): void => {
    const h = readSafetensorsHeader(file);
    for (const e of h.entries) {
      if (keep(e.name)) out.set(e.name, { shape: e.shape, dtype: e.dtype, file, offset: h.dataStart + e.begin });
    }
  };
  if (existsSync(single)) {
    addFile(single, () => true);
    return out;
  }
  if (!existsSync(index)) {
    const hasBin = existsSync(join(dir, 'pytorch_model.bin')) || existsSync(join(dir, 'pytorch_model.bin.index.json'));
    throw new UserError(
      `${dir}: no ${SINGLE} or ${INDEX}` + (hasBin ? ' (PyTorch .bin checkpoints are not read: convert them to safetensors first)' : ''),
    );
  }
  const idx = new Fields(index, readJsonObject(index));
  const map = idx.optObj('weight_map');
  if (!map) throw idx.error('weight_map', 'missing: expected an object {tensor name: shard file}');
  const byShard = new Map<string, Set<string>>();
  for (const name of Object.keys(map.obj)) {
    const shard = map.str(name);
    checkShardName(index, name, shard);
    let s = byShard.get(shard);
    if (!s) byShard.set(shard, (s = new Set()));
    s.add(name);
  }
  for (const [shard, names] of byShard) {
    const file = join(dir, shard);
    if (!existsSync(file)) throw new UserError(`${index}: weight_map lists shard ${shard}, which does not exist in ${dir}`);
    const inFile = new Set(readSafetensorsHeader(file).entries.map((e) => e.name));
    for (const n of names) {
      if (!inFile.has(n)) throw new UserError(`${index}: weight_map.${n}: tensor not found in shard ${shard}`);
    }
    addFile(file, (n) => names.has(n));
  }
  return out;
}

/** Every tensor of a checkpoint directory (single file or sharded), widened to f32; a NaN/±∞ value is a UserError
 *  naming the file, the tensor and the element (io/finite.ts). */
export function readCheckpointTensors(dir: string): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  const files = new Map<string, BinFile>();
  try {
    for (const [name, r] of checkpointRefs(dir)) {
      let f = files.get(r.file);
      if (!f) files.set(r.file, (f = new BinFile(r.file)));
      const t = tensorOf(r.dtype, r.shape, f.read(r.offset, sizeOf(r.shape) * bytesPerElement[r.dtype]));
      assertFiniteCheckpoint(r.file, name, t);
      out.set(name, checkpointTensor(t, r.file));
    }
  } finally {
    for (const f of files.values()) f.close();
  }
  return out;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Tensors a checkpoint may carry that the model does not use (buffers older exports saved). */
const IGNORABLE = /(^|\.)rotary_emb\.inv_freq$/;

/** An HF directory's config and tensor headers (no tensor data is read): what `mla info` needs. */
export function readHfConfig(dir: string): { config: ModelConfig; headers: Map<string, HeaderTensor> } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`${dir}: not a directory`);
  const cfgFile = join(dir, 'config.json');
  const raw = readJsonObject(cfgFile);
  const headers = checkpointShapes(dir);
  checkConfigSizes(cfgFile, raw, headers);
  return { config: parseHfConfig(raw, cfgFile), headers };
}

/**
 * Load an HF llama / qwen2 / mistral directory: config.json → ModelConfig, safetensors → f32 Tensors.
 * Refuses QK-norm models, unknown model types and any missing, mis-shaped or unexpected tensor.
 */
export function loadHfModel(dir: string): LoadedModel {
  const config = readHfConfig(dir).config;
  const tensors = readCheckpointTensors(dir);
  checkHfTensors(dir, config, tensors, (name) => tensors.get(name)!.data);
  const weights = new Map<string, Tensor>();
  for (const spec of expectedGqaTensors(config)) weights.set(spec.name, checkpointWeight(spec.shape, tensors.get(spec.name)!));
  return { config, weights };
}

/**
 * An HF llama / qwen2 / mistral directory opened for reading tensor by tensor (io/source.ts): the config and every
 * tensor's name, shape and place checked as loadHfModel checks them, no weight read yet (values are checked as they
 * are read). The caller closes the source.
 */
export function openHfCheckpoint(dir: string): { config: ModelConfig; source: FileSource } {
  const config = readHfConfig(dir).config;
  const refs = checkpointRefs(dir);
  const source = new FileSource(refs);
  try {
    checkHfTensors(dir, config, refs, (name) => source.read(name).toF32());
  } catch (e) {
    source.close();
    throw e;
  }
  return { config, source };
}

/**
 * The tensors of an HF directory against its config: no QK norms, every expected tensor present with its shape, nothing
 * unexpected but ignorable buffers, a duplicate tied head or an all-zero Llama o_proj bias (read through `values`).
 */
function checkHfTensors(
  dir: string, config: ModelConfig, tensors: ReadonlyMap<string, { shape: readonly number[]; file: string }>, values: (name: string) => Float32Array,
): void {
  for (const [name, t] of tensors) {
    if (/(^|\.)(q_norm|k_norm|q_layernorm|k_layernorm)(\.|$)/.test(name)) throw qkNormError(t.file, `tensor ${name}`);
  }
  const expected = new Set<string>();
  for (const spec of expectedGqaTensors(config)) {
    const t = tensors.get(spec.name);
    if (!t) {
      const hint = spec.name === 'lm_head.weight' ? ' (config.json says tie_word_embeddings is false, so the checkpoint must hold it)' : '';
      throw new UserError(`${dir}: tensor ${spec.name}: missing (expected shape ${fmt(spec.shape)})${hint}`);
    }
    if (!sameShape(t.shape, spec.shape)) {
      throw new UserError(`${t.file}: tensor ${spec.name}: expected shape ${fmt(spec.shape)}, found ${fmt(t.shape)}`);
    }
    expected.add(spec.name);
  }

  const unexpected: string[] = [];
  for (const [name, t] of tensors) {
    if (expected.has(name) || IGNORABLE.test(name)) continue;
    // Tied models sometimes also store the (identical) head: the embedding is used.
    if (name === 'lm_head.weight' && config.tieEmbeddings) continue;
    // Llama's attention_bias adds an o_proj bias the schema has no place for: accept it only when it is zero.
    if (/\.self_attn\.o_proj\.bias$/.test(name) && config.arch === 'llama') {
      if (values(name).every((x) => x === 0)) continue;
      throw new UserError(`${t.file}: tensor ${name}: a non-zero o_proj bias is not supported`);
    }
    unexpected.push(name);
  }
  if (unexpected.length > 0) {
    const list = unexpected.slice(0, 5).join(', ') + (unexpected.length > 5 ? `, … (${unexpected.length} in all)` : '');
    throw new UserError(`${dir}: unexpected tensors for a ${config.arch} model: ${list}`);
  }
}

const TORCH_DTYPE: Record<SafetensorsDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export interface SaveHfOptions {
  /** Replace an existing non-empty directory (default: refuse). */
  overwrite?: boolean;
  /** Split into model-0000k-of-0000n.safetensors shards of at most about this many bytes, with an index. */
  maxShardBytes?: number;
  /** Extra files to write into the directory (e.g. tokenizer.json), name → contents. */
  extraFiles?: Record<string, string>;
}

/**
 * Save a llama / qwen2 / mistral model as an HF directory (config.json + safetensors in `dtype`).
 * Written to `dir.tmp-…` and renamed into place, so `dir` never holds a partial checkpoint.
 */
export function saveHfModel(
  dir: string,
  config: ModelConfig,
  weights: Map<string, Tensor>,
  dtype: SafetensorsDtype = 'F32',
  opts: SaveHfOptions = {},
): void {
  const cfgJson = hfConfigJson(config, TORCH_DTYPE[dtype]);
  const a = uniformGqaLayer(config, 'saveHfModel');
  const entries = expectedGqaTensors(config).map((spec) => {
    const t = weights.get(spec.name);
    if (!t) throw new UserError(`saveHfModel: tensor ${spec.name}: missing (expected shape ${fmt(spec.shape)})`);
    if (!sameShape(t.shape, spec.shape)) throw new UserError(`saveHfModel: tensor ${spec.name}: expected shape ${fmt(spec.shape)}, found ${fmt(t.shape)}`);
    const data = t.toF32();
    return { name: spec.name, shape: spec.shape, data, dtype };
  });
  // transformers' Llama with attention_bias also has an o_proj bias: write zeros so it loads exactly.
  if (config.arch === 'llama' && a.qkvBias) {
    config.layers.forEach((_, i) => {
      entries.push({ name: `model.layers.${i}.self_attn.o_proj.bias`, shape: [config.hiddenSize], data: new Float32Array(config.hiddenSize), dtype });
    });
  }

  const tmp = tempNameFor(dir);
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(cfgJson, null, 2) + '\n');
    const meta = { format: 'pt' };
    const bytesOf = (e: (typeof entries)[number]): number => e.data.length * (dtype === 'F32' ? 4 : 2);
    const shards: (typeof entries)[] = [];
    if (opts.maxShardBytes === undefined) {
      shards.push(entries);
    } else {
      let cur: typeof entries = [];
      let size = 0;
      for (const e of entries) {
        if (cur.length > 0 && size + bytesOf(e) > opts.maxShardBytes) {
          shards.push(cur);
          cur = [];
          size = 0;
        }
        cur.push(e);
        size += bytesOf(e);
      }
      if (cur.length > 0) shards.push(cur);
    }
    if (shards.length === 1 && opts.maxShardBytes === undefined) {
      writeSafetensors(join(tmp, SINGLE), entries, meta);
    } else {
      const n = shards.length;
      const pad = (k: number): string => String(k).padStart(5, '0');
      const weightMap: Record<string, string> = {};
      shards.forEach((s, k) => {
        const name = `model-${pad(k + 1)}-of-${pad(n)}.safetensors`;
        writeSafetensors(join(tmp, name), s, meta);
        for (const e of s) weightMap[e.name] = name;
      });
      const total = entries.reduce((acc, e) => acc + bytesOf(e), 0);
      writeFileSync(join(tmp, INDEX), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    }
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) {
      if (name !== basename(name)) throw new UserError(`saveHfModel: extra file "${name}" must be a plain file name`);
      writeFileSync(join(tmp, name), text);
    }
    replaceDir(tmp, dir, opts.overwrite ?? false);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

export { replaceDir } from './output.js';

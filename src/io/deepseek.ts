// Our native save format IS the DeepSeek-V3 HF layout: config.json (model_type deepseek_v3, every layer dense) +
// model.safetensors under DeepSeek-V3 tensor names + the tokenizer. What the stock layout cannot express (per-layer
// ranks, no latent norm, hybrid GQA layers, exact rope frequencies, half-split rope pairing) lives under the one extra
// config key `mla_upcycle`; a directory without that key is read with the stock DeepSeek-V3 semantics.

import { existsSync, mkdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import type { LayerAttention, MlaAttention, ModelConfig } from '../model/config.js';
import { defaultInvFreq, llama3InvFreq } from '../model/config.js';
import { modelTensors } from '../model/weights.js';
import { ATTENTION_KINDS, attentionKind, configProblems, isAttentionKind } from '../model/attention/index.js';
import { UserError } from '../errors.js';
import { Fields, isObject, readJsonObject, stringifyWithFloats, type JsonObject } from './json.js';
import { hfConfigJson } from './hfconfig.js';
import { checkConfigSizes, checkpointShapes, checkpointWeight, readCheckpointTensors, type HeaderTensor, type LoadedModel } from './hf.js';
import { writeSafetensors, type SafetensorsDtype, type SafetensorsHeaderEntry } from './safetensors.js';
import { SafetensorsStreamWriter } from './safetensors-stream.js';
import { makeParents, replaceDir, tempNameFor } from './output.js';

export const NATIVE_VERSION = 1;
const TORCH_DTYPE: Record<SafetensorsDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
/** config.json fields transformers' DeepseekV3Config (and its rope parameters) types as float: written as 1.0, not 1. */
export const FLOAT_FIELDS: ReadonlySet<string> = new Set([
  'routed_scaling_factor', 'initializer_range', 'rms_norm_eps', 'attention_dropout', 'rope_theta', 'factor', 'low_freq_factor', 'high_freq_factor',
]);

/** Inverse frequencies Dr/2 as DeepSeek computes them: base^(−2i/Dr) / factor. */
export function geometricInvFreq(base: number, ropeDim: number, factor = 1): number[] {
  return defaultInvFreq(base, ropeDim).map((f) => f / factor);
}

/** Base and linear factor reproducing invFreq exactly, or null. */
export function geometricFit(invFreq: number[]): { base: number; factor: number } | null {
  const d = invFreq.length;
  if (d === 0) return null;
  const f0 = invFreq[0]!;
  const rho = d > 1 ? invFreq[1]! / f0 : 1e-4;
  const base = rho ** -d;
  const want = geometricInvFreq(base, 2 * d, 1 / f0);
  return want.every((w, i) => Math.abs(w - invFreq[i]!) <= 1e-9 * Math.abs(w)) ? { base, factor: 1 / f0 } : null;
}

/**
 * How the stock layout writes one set of rope frequencies (Dr/2 values, shared by every layer): a geometric run as
 * rope_theta (+ a linear rope_scaling factor), or, for a Llama-3 teacher (rope_type llama3) whose kept pairs are
 * j = 0, s, 2s, … , rope_theta = θ^(s·Dr/D) with the teacher's llama3 rope_scaling: transformers then bends
 * base^(−2i/Dr) = θ^(−2si/D) exactly as the teacher did. null: the stock layout cannot say it.
 */
export function stockRopeParams(cfg: ModelConfig, invFreq: number[]): { theta: number; scaling: Record<string, unknown> | null } | null {
  const fit = geometricFit(invFreq);
  if (fit) return { theta: fit.base, scaling: Math.abs(fit.factor - 1) > 1e-12 ? { type: 'linear', rope_type: 'linear', factor: fit.factor } : null };
  const theta = llama3Base(cfg, invFreq);
  if (theta === null) return null;
  const sc = cfg.ropeScaling!;
  return {
    theta,
    scaling: {
      rope_type: 'llama3', factor: sc.factor, low_freq_factor: sc.low_freq_factor, high_freq_factor: sc.high_freq_factor,
      original_max_position_embeddings: sc.original_max_position_embeddings,
    },
  };
}

/** The rope_theta under which the teacher's llama3 scaling reproduces invFreq (see stockRopeParams), or null. */
function llama3Base(cfg: ModelConfig, invFreq: number[]): number | null {
  const sc = cfg.ropeScaling;
  if (!sc || sc.rope_type !== 'llama3') return null;
  const teacher = cfg.ropeInvFreq;
  const D = 2 * teacher.length;
  const Dr = 2 * invFreq.length;
  const idx = invFreq.map((f) => teacher.findIndex((t) => Math.abs(t - f) <= 1e-12 * f));
  if (idx[0] !== 0 || idx.some((j) => j < 0)) return null;
  const s = idx.length > 1 ? idx[1]! - idx[0] : 1;
  if (s < 1) return null;
  const theta = cfg.ropeTheta ** ((s * Dr) / D);
  const want = llama3InvFreq(defaultInvFreq(theta, Dr), sc);
  return want.every((w, i) => Math.abs(w - invFreq[i]!) <= 1e-9 * invFreq[i]!) ? theta : null;
}

function layerJson(a: LayerAttention): JsonObject {
  return { kind: a.kind, ...attentionKind(a).toJson(a) } as JsonObject;
}

/**
 * config.json of a model directory: the DeepSeek-V3 layout for a model with MLA layers, and its own HF layout (llama,
 * qwen2, mistral) for one without (a GQA model trained by distillation, say), which no DeepSeek-V3 config can describe.
 * Both read back with io/load.ts loadModel. Throws the reason when the model has neither form.
 */
export function modelDirConfigJson(cfg: ModelConfig, torchDtype: string, native: boolean): JsonObject {
  return cfg.layers.some((a) => a.kind === 'mla') ? deepseekConfigJson(cfg, torchDtype, native) : hfConfigJson(cfg, torchDtype);
}

/** config.json for a model in the DeepSeek-V3 layout (with the mla_upcycle extra key when `native`). */
export function deepseekConfigJson(cfg: ModelConfig, torchDtype: string, native: boolean): JsonObject {
  const mla = cfg.layers.filter((a): a is MlaAttention => a.kind === 'mla');
  const first = mla[0];
  if (!first) throw new UserError('deepseek_v3 layout: the model has no MLA layer');
  const rope = stockRopeParams(cfg, first.ropeInvFreq);
  const j: JsonObject = {
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    moe_intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numHeads,
    // Every layer dense: transformers builds DeepseekV3MLP for layers < first_k_dense_replace (vLLM alike).
    first_k_dense_replace: cfg.numLayers,
    n_routed_experts: 1,
    n_shared_experts: 1,
    num_experts_per_tok: 1,
    n_group: 1,
    topk_group: 1,
    moe_layer_freq: 1,
    routed_scaling_factor: 1.0,
    initializer_range: 0.02,
    norm_topk_prob: true,
    q_lora_rank: first.qRank,
    kv_lora_rank: Math.max(...mla.map((a) => a.kvRank)),
    qk_nope_head_dim: first.nopeDim,
    qk_rope_head_dim: first.ropeDim,
    v_head_dim: first.vDim,
    hidden_act: 'silu',
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: rope ? rope.theta : cfg.ropeTheta,
    rope_scaling: rope ? rope.scaling : null,
    rope_interleave: cfg.ropePairing === 'adjacent',
    attention_bias: false,
    attention_dropout: 0.0,
    tie_word_embeddings: cfg.tieEmbeddings,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenId,
    torch_dtype: torchDtype,
  };
  if (native) {
    j.mla_upcycle = {
      version: NATIVE_VERSION,
      source_arch: cfg.arch,
      rope_pairing: cfg.ropePairing,
      rope_theta: cfg.ropeTheta,
      rope_scaling: cfg.ropeScaling,
      rope_inv_freq: cfg.ropeInvFreq,
      layers: cfg.layers.map(layerJson),
    };
  }
  return j;
}

export interface SaveOptions {
  dtype?: SafetensorsDtype;
  overwrite?: boolean;
  /** Files copied into the directory (tokenizer files): source path and name inside the directory. */
  copyFiles?: { from: string; name: string }[];
  /** Write the stock DeepSeek-V3 config only (no mla_upcycle key): the caller checked it is expressible. */
  stock?: boolean;
  /** Extra metadata stored in the safetensors header. */
  metadata?: Record<string, string>;
  /** Further files written into the directory before it is moved into place (name → contents), e.g. conversion.json
   *  or an export's tokenizer files. */
  extraFiles?: Record<string, string>;
}

/** Save a model in the DeepSeek-V3 layout, atomically (temporary directory, then rename). */
export function saveModelDir(dir: string, cfg: ModelConfig, weights: Map<string, Tensor>, opts: SaveOptions = {}): void {
  const dtype = opts.dtype ?? 'F32';
  const cfgJson = modelDirConfigJson(cfg, TORCH_DTYPE[dtype], !opts.stock);
  const entries = modelTensors(cfg).map((spec) => {
    const t = weights.get(spec.name);
    if (!t) throw new UserError(`save ${dir}: tensor ${spec.name}: missing`);
    if (t.size !== spec.shape.reduce((a, b) => a * b, 1)) throw new UserError(`save ${dir}: tensor ${spec.name}: expected [${spec.shape.join(', ')}], found [${t.shape.join(', ')}]`);
    const data = t.toF32();
    return { name: spec.name, shape: spec.shape, data, dtype };
  });
  // transformers' Llama with attention_bias also has an o_proj bias: zeros, so an all-GQA directory loads exactly there.
  if (cfgJson.model_type === 'llama' && cfgJson.attention_bias === true) {
    cfg.layers.forEach((_, i) => entries.push({ name: `model.layers.${i}.self_attn.o_proj.bias`, shape: [cfg.hiddenSize], data: new Float32Array(cfg.hiddenSize), dtype }));
  }
  const undoParents = makeParents(dir);
  const tmp = tempNameFor(dir);
  try {
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'config.json'), stringifyWithFloats(cfgJson, FLOAT_FIELDS) + '\n');
    writeSafetensors(join(tmp, 'model.safetensors'), entries, { format: 'pt', ...opts.metadata });
    for (const f of opts.copyFiles ?? []) copyFileSync(f.from, join(tmp, basename(f.name)));
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) {
      if (name !== basename(name)) throw new UserError(`saveModelDir: extra file "${name}" must be a plain file name`);
      writeFileSync(join(tmp, name), text);
    }
    replaceDir(tmp, dir, opts.overwrite ?? false);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    undoParents();
    throw e;
  }
}

/** What a streamed save writes after its tensors: the final config, the dtype config.json names, further files. */
export interface StreamedModel {
  config: ModelConfig;
  /** torch_dtype in config.json (the dtype of most of the weights). */
  dtype: SafetensorsDtype;
  /** Files written into the directory beside the model (e.g. conversion.json), name → contents. */
  extraFiles?: Record<string, string>;
}

/**
 * Save a model in the DeepSeek-V3 layout tensor by tensor, for models larger than memory: `body` writes the tensors
 * `planned` (in order, shapes as upper bounds: io/safetensors-stream.ts) into model.safetensors and returns the final
 * config. Atomic like saveModelDir: everything goes into a temporary directory renamed into place at the end; a
 * failure anywhere (in `body` too) removes it, so `dir` is never partial.
 */
export function streamModelDir(
  dir: string, planned: readonly SafetensorsHeaderEntry[], opts: Omit<SaveOptions, 'dtype' | 'extraFiles'>,
  body: (w: SafetensorsStreamWriter) => StreamedModel,
): StreamedModel {
  const undoParents = makeParents(dir);
  const tmp = tempNameFor(dir);
  let w: SafetensorsStreamWriter | null = null;
  try {
    mkdirSync(tmp);
    w = new SafetensorsStreamWriter(join(tmp, 'model.safetensors'), planned, { format: 'pt', ...opts.metadata });
    const r = body(w);
    w.finish();
    writeFileSync(join(tmp, 'config.json'), stringifyWithFloats(deepseekConfigJson(r.config, TORCH_DTYPE[r.dtype], !opts.stock), FLOAT_FIELDS) + '\n');
    for (const f of opts.copyFiles ?? []) copyFileSync(f.from, join(tmp, basename(f.name)));
    for (const [name, text] of Object.entries(r.extraFiles ?? {})) {
      if (name !== basename(name)) throw new UserError(`streamModelDir: extra file "${name}" must be a plain file name`);
      writeFileSync(join(tmp, name), text);
    }
    replaceDir(tmp, dir, opts.overwrite ?? false);
    return r;
  } catch (e) {
    w?.abort();
    rmSync(tmp, { recursive: true, force: true });
    undoParents();
    throw e;
  }
}

function parseLayer(f: Fields, i: number): LayerAttention {
  const kind = f.str('kind');
  if (!isAttentionKind(kind)) throw f.error('kind', `expected ${Object.keys(ATTENTION_KINDS).map((k) => `"${k}"`).join(' or ')} for layer ${i}, got "${kind}"`);
  return ATTENTION_KINDS[kind].fromJson(f);
}

/** Read a deepseek_v3 directory: ours (with mla_upcycle) or a stock dense one. */
export function loadDeepseekModel(dir: string): LoadedModel {
  const config = readDeepseekConfig(dir).config;
  const tensors = readCheckpointTensors(dir);
  const weights = new Map<string, Tensor>();
  for (const spec of modelTensors(config)) {
    const t = tensors.get(spec.name);
    if (!t) throw new UserError(`${dir}: tensor ${spec.name}: missing (expected shape [${spec.shape.join(', ')}])`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new UserError(`${t.file}: tensor ${spec.name}: expected shape [${spec.shape.join(', ')}], found [${t.shape.join(', ')}]`);
    }
    weights.set(spec.name, checkpointWeight(spec.shape, t));
  }
  return { config, weights };
}

/** A deepseek_v3 directory's config and tensor headers (no tensor data is read). */
export function readDeepseekConfig(dir: string): { config: ModelConfig; headers: Map<string, HeaderTensor> } {
  const file = join(dir, 'config.json');
  const raw = readJsonObject(file);
  const headers = checkpointShapes(dir);
  checkConfigSizes(file, raw, headers);
  const f = new Fields(file, raw);
  const L = f.int('num_hidden_layers');
  const H = f.int('num_attention_heads');
  const ext = f.optObj('mla_upcycle');
  let layers: LayerAttention[];
  let pairing: 'half' | 'adjacent';
  let ropeInvFreq: number[];
  let ropeTheta: number;
  let ropeScaling: Record<string, unknown> | null = null;
  if (ext) {
    const v = ext.int('version');
    if (v > NATIVE_VERSION) throw ext.error('version', `expected ≤ ${NATIVE_VERSION} (written by a newer mla-upcycle), got ${v}`);
    const ls = ext.obj.layers;
    if (!Array.isArray(ls) || ls.length !== L) throw ext.error('layers', `expected an array of ${L} layer objects (num_hidden_layers)`);
    layers = ls.map((o, i) => {
      if (!isObject(o)) throw ext.error(`layers[${i}]`, 'expected an object');
      return parseLayer(new Fields(file, o, `mla_upcycle.layers[${i}]`), i);
    });
    const p = ext.str('rope_pairing');
    if (p !== 'half' && p !== 'adjacent') throw ext.error('rope_pairing', `expected "half" or "adjacent", got "${p}"`);
    pairing = p;
    ropeTheta = ext.pos('rope_theta');
    const rif = ext.obj.rope_inv_freq;
    if (!Array.isArray(rif) || rif.some((x) => typeof x !== 'number')) throw ext.error('rope_inv_freq', 'expected an array of numbers');
    ropeInvFreq = rif as number[];
    const rs = ext.obj.rope_scaling;
    ropeScaling = isObject(rs) ? rs : null;
  } else {
    // Stock DeepSeek-V3: every layer MLA with latent norm, dense MLP required.
    if (f.optInt('first_k_dense_replace', 0, 0) < L) {
      throw f.error('first_k_dense_replace', `expected ≥ num_hidden_layers (${L}): mixture-of-experts layers are not supported, only dense DeepSeek-V3 models`);
    }
    if (f.optBool('attention_bias', false)) throw f.error('attention_bias', 'expected false (attention biases in the stock layout are not supported)');
    const Dr = f.int('qk_rope_head_dim');
    ropeTheta = f.optPos('rope_theta', 10000);
    let factor = 1;
    let llama3 = false;
    const rs = f.optObj('rope_scaling');
    if (rs) {
      const type = rs.has('rope_type') ? rs.str('rope_type') : rs.optStr('type', 'default');
      if (type === 'linear') factor = rs.pos('factor');
      else if (type === 'llama3') {
        llama3 = true;
        for (const k of ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']) rs.pos(k);
      } else if (type !== 'default') throw rs.error('rope_type', `expected "linear", "llama3" or none (got "${type}": YaRN and other scalings are not supported)`);
      ropeScaling = rs.obj;
    }
    ropeInvFreq = llama3 ? llama3InvFreq(defaultInvFreq(ropeTheta, Dr), rs!.obj) : geometricInvFreq(ropeTheta, Dr, factor);
    pairing = f.optBool('rope_interleave', true) ? 'adjacent' : 'half';
    const q = f.obj.q_lora_rank;
    const qRank = q === null || q === undefined || q === 0 ? null : f.int('q_lora_rank');
    const a: MlaAttention = {
      kind: 'mla', kvRank: f.int('kv_lora_rank'), ropeDim: Dr, nopeDim: f.int('qk_nope_head_dim', 0), vDim: f.int('v_head_dim'),
      qRank, latentNorm: true, bias: false, ropeInvFreq,
    };
    layers = Array.from({ length: L }, () => ({ ...a }));
  }
  const act = f.optStr('hidden_act', 'silu');
  if (act !== 'silu') throw f.error('hidden_act', `expected "silu", got "${act}"`);
  const config: ModelConfig = {
    arch: 'deepseek_v3',
    vocabSize: f.int('vocab_size'),
    hiddenSize: f.int('hidden_size'),
    intermediateSize: f.int('intermediate_size'),
    numLayers: L,
    numHeads: H,
    rmsNormEps: f.optPos('rms_norm_eps', 1e-6),
    ropePairing: pairing,
    ropeInvFreq,
    ropeTheta,
    ropeScaling,
    maxPositions: f.optInt('max_position_embeddings', 4096),
    tieEmbeddings: f.optBool('tie_word_embeddings', false),
    bosTokenId: f.optTokenId('bos_token_id'),
    eosTokenId: f.optTokenId('eos_token_id'),
    layers,
  };
  // Cross-layer constraints (an xKV layer reads an earlier MLA layer of its group): only our extra key has them.
  const problems = configProblems(config);
  if (ext && problems.length) throw ext.error('layers', `layers that fit together (${problems.join('; ')})`);
  return { config, headers };
}

/** Whether a directory holds a config.json (used by callers that accept a model path). */
export function hasConfig(dir: string): boolean {
  return existsSync(join(dir, 'config.json'));
}

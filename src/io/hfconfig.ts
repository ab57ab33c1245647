// HF config.json of a Llama-family model (llama, qwen2, mistral) ↔ ModelConfig.
// Reads both RoPE spellings (top-level rope_theta/rope_scaling, and transformers 5's rope_parameters);
// refuses what the tool cannot run exactly (QK-norm, other activations, other rope scalings, MLP bias, ...).

import { defaultInvFreq, llama3InvFreq, type GqaAttention, type ModelConfig } from '../model/config.js';
import { UserError } from '../errors.js';
import { Fields, isObject, jsonPreview, type JsonObject } from './json.js';

export type HfGqaArch = 'llama' | 'qwen2' | 'mistral';

const SUPPORTED: Record<HfGqaArch, string> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  mistral: 'MistralForCausalLM',
};

/** model_types whose attention applies a per-head RMSNorm to q and k (breaks the RoPE/latent algebra). */
export const QK_NORM_MODEL_TYPES: readonly string[] = ['qwen3', 'qwen3_moe', 'gemma3', 'gemma3_text', 'olmo2', 'olmoe', 'cohere2'];

export function isHfGqaArch(t: string): t is HfGqaArch {
  return Object.hasOwn(SUPPORTED, t);
}

/** The QK-norm refusal, shared by the config check and the tensor-name check. */
export function qkNormError(where: string, what: string): UserError {
  return new UserError(
    `${where}: ${what}: this model applies QK-norm (a per-head RMSNorm on q and k). ` +
      'MLA conversion needs q and k to be linear in the hidden state, so QK-norm models are not supported.',
  );
}

/** RoPE settings as read: theta, the scaling object (null for plain RoPE) and the inverse frequencies (D/2). */
interface RopeRead {
  theta: number;
  scaling: Record<string, unknown> | null;
  invFreq: number[];
}

function readRope(f: Fields, headDim: number): RopeRead {
  // transformers 5: rope_parameters {rope_type, rope_theta, ...}; earlier: rope_theta + rope_scaling {rope_type|type, ...}.
  const params = f.optObj('rope_parameters');
  const scalingObj = f.optObj('rope_scaling');
  const theta = params?.has('rope_theta') ? params.pos('rope_theta') : f.optPos('rope_theta', 10000);
  let scaling: Fields | null = null;
  let ropeType = 'default';
  for (const s of [params, scalingObj]) {
    if (!s) continue;
    const t = s.has('rope_type') ? s.str('rope_type') : s.has('type') ? s.str('type') : 'default';
    if (t !== 'default') {
      scaling = s;
      ropeType = t;
      break;
    }
  }
  const partial = params?.has('partial_rotary_factor') ? params.pos('partial_rotary_factor') : f.optPos('partial_rotary_factor', 1);
  if (partial !== 1) throw f.error('partial_rotary_factor', `only 1 (RoPE on the whole head) is supported, got ${partial}`);
  const base = defaultInvFreq(theta, headDim);
  if (!scaling) return { theta, scaling: null, invFreq: base };
  if (ropeType !== 'llama3') {
    throw scaling.error(
      scaling.has('rope_type') ? 'rope_type' : 'type',
      `rope type "${ropeType}" is not supported (supported: default, llama3)`,
    );
  }
  // transformers requires all four for llama3; we require them too rather than guess.
  const s: Record<string, unknown> = {
    factor: scaling.pos('factor'),
    low_freq_factor: scaling.pos('low_freq_factor'),
    high_freq_factor: scaling.pos('high_freq_factor'),
    original_max_position_embeddings: scaling.int('original_max_position_embeddings'),
  };
  if ((s.high_freq_factor as number) <= (s.low_freq_factor as number)) {
    throw scaling.error('high_freq_factor', `must exceed low_freq_factor (${String(s.low_freq_factor)})`);
  }
  const kept: Record<string, unknown> = { ...scaling.obj, rope_type: 'llama3' };
  delete kept.type;
  return { theta, scaling: kept, invFreq: llama3InvFreq(base, s) };
}

/**
 * config.json (already parsed) of a llama / qwen2 / mistral model → ModelConfig (all layers 'gqa', half-split RoPE).
 * Every field used is validated; errors name `file` and the field.
 */
export function parseHfConfig(raw: unknown, file: string): ModelConfig {
  if (!isObject(raw)) throw new UserError(`${file}: (whole file): expected a JSON object`);
  const f = new Fields(file, raw);
  const modelType = f.str('model_type');
  if (QK_NORM_MODEL_TYPES.includes(modelType)) throw qkNormError(file, `model_type "${modelType}"`);
  if (!isHfGqaArch(modelType)) {
    throw f.error('model_type', `"${modelType}" is not supported (supported: ${Object.keys(SUPPORTED).join(', ')}, deepseek_v3)`);
  }
  const archs = f.optStrArray('architectures');
  if (archs && !archs.some((a) => a.endsWith('ForCausalLM'))) {
    throw f.error('architectures', `expected a ...ForCausalLM class (e.g. ${SUPPORTED[modelType]}), got ${jsonPreview(archs)}`);
  }

  const vocabSize = f.int('vocab_size');
  const hiddenSize = f.int('hidden_size');
  const intermediateSize = f.int('intermediate_size');
  const numLayers = f.int('num_hidden_layers');
  const numHeads = f.int('num_attention_heads');
  const numKvHeads = f.optInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw f.error('num_key_value_heads', `${numKvHeads} must divide num_attention_heads (${numHeads})`);
  }
  let headDim: number;
  if (f.has('head_dim')) headDim = f.int('head_dim');
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else throw f.error('head_dim', `missing, and hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads})`);
  if (headDim % 2 !== 0) throw f.error('head_dim', `RoPE needs an even head dimension, got ${headDim}`);

  const act = f.has('hidden_act') ? f.str('hidden_act') : f.optStr('hidden_activation', 'silu');
  if (act !== 'silu' && act !== 'swish') throw f.error('hidden_act', `only "silu" (SwiGLU) is supported, got "${act}"`);
  if (f.optBool('mlp_bias', false)) throw f.error('mlp_bias', 'MLP biases are not supported');
  if (f.optBool('use_qk_norm', false)) throw qkNormError(file, 'use_qk_norm');

  // Qwen2 always has q/k/v biases; Llama has them (and an o_proj bias) with attention_bias; Mistral never.
  const qkvBias = modelType === 'qwen2' ? true : modelType === 'llama' ? f.optBool('attention_bias', false) : false;

  let maxPositions = f.int('max_position_embeddings');
  // A sliding window changes nothing up to the window length: cap the positions there instead of refusing.
  const useWindow = modelType === 'qwen2' ? f.optBool('use_sliding_window', false) : modelType === 'mistral';
  if (useWindow && f.has('sliding_window')) maxPositions = Math.min(maxPositions, f.int('sliding_window'));

  const rope = readRope(f, headDim);
  const layer: GqaAttention = { kind: 'gqa', numKvHeads, headDim, qkvBias };
  const cfg: ModelConfig = {
    arch: modelType,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    rmsNormEps: f.pos('rms_norm_eps'),
    ropePairing: 'half',
    ropeInvFreq: rope.invFreq,
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositions,
    tieEmbeddings: f.optBool('tie_word_embeddings', false),
    bosTokenId: f.optTokenId('bos_token_id'),
    eosTokenId: f.optTokenId('eos_token_id'),
    layers: Array.from({ length: numLayers }, () => ({ ...layer })),
  };
  return cfg;
}

/** The one GQA layout an HF llama-family config can express (all layers identical), or a UserError. */
export function uniformGqaLayer(cfg: ModelConfig, what: string): GqaAttention {
  const first = cfg.layers[0];
  if (cfg.layers.length !== cfg.numLayers || !first) throw new UserError(`${what}: config has ${cfg.layers.length} layers, numLayers ${cfg.numLayers}`);
  for (const l of cfg.layers) {
    if (l.kind !== 'gqa') throw new UserError(`${what}: an HF ${cfg.arch} checkpoint cannot hold MLA layers`);
    if (l.numKvHeads !== (first as GqaAttention).numKvHeads || l.headDim !== (first as GqaAttention).headDim || l.qkvBias !== (first as GqaAttention).qkvBias) {
      throw new UserError(`${what}: an HF ${cfg.arch} checkpoint needs every layer to have the same attention shape`);
    }
  }
  return first as GqaAttention;
}

/** ModelConfig → config.json object for transformers (llama / qwen2 / mistral), in the pre-5 spelling it still reads. */
export function hfConfigJson(cfg: ModelConfig, torchDtype: string): JsonObject {
  const what = 'saveHfModel';
  if (!isHfGqaArch(cfg.arch)) throw new UserError(`${what}: arch "${cfg.arch}" is not a llama-family model (llama, qwen2, mistral)`);
  if (cfg.ropePairing !== 'half') {
    throw new UserError(`${what}: HF ${cfg.arch} uses half-split RoPE; this model uses '${cfg.ropePairing}' pairs (permute q/k rows first)`);
  }
  const a = uniformGqaLayer(cfg, what);
  if (cfg.arch === 'qwen2' && !a.qkvBias) throw new UserError(`${what}: qwen2 always has q/k/v biases; this model has none`);
  if (cfg.arch === 'mistral' && a.qkvBias) throw new UserError(`${what}: mistral has no attention biases; this model has q/k/v biases`);
  // The rope frequencies must be exactly what theta (+ scaling) gives, or transformers would run another model.
  const scaling = cfg.ropeScaling ? { ...cfg.ropeScaling } : null;
  if (scaling) delete scaling.rope_theta;
  const base = defaultInvFreq(cfg.ropeTheta, a.headDim);
  const want = scaling ? llama3InvFreq(base, scaling) : base;
  if (scaling && scaling.rope_type !== 'llama3') throw new UserError(`${what}: rope scaling ${jsonPreview(scaling)} is not supported`);
  if (want.length !== cfg.ropeInvFreq.length || want.some((w, i) => Math.abs(w - cfg.ropeInvFreq[i]!) > 1e-9 * Math.abs(w) + 1e-30)) {
    throw new UserError(`${what}: ropeInvFreq does not match rope_theta ${cfg.ropeTheta}${scaling ? ' with llama3 scaling' : ''}`);
  }
  const j: JsonObject = {
    architectures: [SUPPORTED[cfg.arch]],
    model_type: cfg.arch,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: a.numKvHeads,
    hidden_act: 'silu',
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: scaling,
    tie_word_embeddings: cfg.tieEmbeddings,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenId,
    torch_dtype: torchDtype,
  };
  if (a.headDim * cfg.numHeads !== cfg.hiddenSize) j.head_dim = a.headDim;
  if (cfg.arch === 'llama') {
    j.attention_bias = a.qkvBias;
    j.mlp_bias = false;
  }
  if (cfg.arch === 'qwen2') j.use_sliding_window = false;
  if (cfg.arch === 'mistral') j.sliding_window = null;
  return j;
}

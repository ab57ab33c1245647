// One config schema for every model the tool handles: GQA/MHA teachers, MLA students and hybrids.
// Each layer declares its attention kind; weights use HF / DeepSeek-V3 tensor names (model/weights.ts).

import type { RopePairing } from '../tensor/ops.js';
import { attentionKind } from './attention/index.js';

export type Architecture = 'llama' | 'qwen2' | 'mistral' | 'deepseek_v3';

/** Original (GQA or MHA) attention, as in Llama/Qwen2/Mistral. */
export interface GqaAttention {
  kind: 'gqa';
  numKvHeads: number; // Hkv
  headDim: number; // D
  /** q/k/v projections carry a bias (Qwen2). */
  qkvBias: boolean;
}

/** DeepSeek-V3 Multi-head Latent Attention. */
export interface MlaAttention {
  kind: 'mla';
  kvRank: number; // R = kv_lora_rank (may differ per layer)
  ropeDim: number; // Dr = qk_rope_head_dim (one rope key shared by all heads)
  nopeDim: number; // Dn = qk_nope_head_dim
  vDim: number; // Dv = v_head_dim
  /** q_lora_rank; null → a single q_proj. */
  qRank: number | null;
  /** kv_a_layernorm present (stock engines always apply it). */
  latentNorm: boolean;
  /** q_proj and kv_a_proj_with_mqa carry a bias (converted from a model with q/k/v bias, e.g. Qwen2). */
  bias: boolean;
  /** Inverse frequency of each rope pair (Dr/2 values): conversions keep the teacher's original frequencies. */
  ropeInvFreq: number[];
}

/**
 * A layer of an xKV group (cross-layer latent): MLA without a latent of its own. It reads the latent c_t of layer
 * `source` (the group's first layer, an MLA layer, at the same positions) through its own kv_b_proj, with its own
 * query and its own rope key (k_rope_proj, Dr values per token cached per layer).
 */
export interface XkvAttention {
  kind: 'xkv';
  /** The layer whose latent this one reads: an earlier MLA layer, with only xkv layers of the same group between. */
  source: number;
  kvRank: number; // R: the source's kv rank (checked)
  ropeDim: number; // Dr
  nopeDim: number; // Dn
  vDim: number; // Dv
  qRank: number | null;
  /** q_proj and k_rope_proj carry a bias. */
  bias: boolean;
  ropeInvFreq: number[];
}

export type LayerAttention = GqaAttention | MlaAttention | XkvAttention;

export interface ModelConfig {
  arch: Architecture;
  vocabSize: number; // V
  hiddenSize: number; // C
  intermediateSize: number; // I
  numLayers: number; // L
  numHeads: number; // H (query heads)
  rmsNormEps: number;
  /** Pairing of rotary dimensions: 'half' (HF Llama/Qwen, (j, j+D/2)) or 'adjacent' (llama2.c, DeepSeek interleave). */
  ropePairing: RopePairing;
  /** Inverse frequencies of the original attention's rope pairs (D/2 values), after any rope scaling. */
  ropeInvFreq: number[];
  ropeTheta: number;
  /** rope_scaling / rope_parameters as read (kept for export); invFreq already includes it. */
  ropeScaling: Record<string, unknown> | null;
  maxPositions: number;
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** Per-layer attention; length numLayers. */
  layers: LayerAttention[];
}

/** Default inverse frequencies θ^(−2i/D), i < D/2. */
export function defaultInvFreq(theta: number, headDim: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < headDim / 2; i++) out.push(Math.pow(theta, (-2 * i) / headDim));
  return out;
}

/** Llama-3 rope scaling (rope_type "llama3") applied to inverse frequencies, as transformers does. */
export function llama3InvFreq(base: number[], s: Record<string, unknown>): number[] {
  const factor = Number(s.factor ?? 8);
  const low = Number(s.low_freq_factor ?? 1);
  const high = Number(s.high_freq_factor ?? 4);
  const orig = Number(s.original_max_position_embeddings ?? 8192);
  const lowWavelen = orig / low;
  const highWavelen = orig / high;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / factor;
    const smooth = (orig / wavelen - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** Values cached per token per layer by the decode cache (the theory the cache's own byte count is tested against). */
export function kvValuesPerToken(layer: LayerAttention): number {
  return attentionKind(layer).kvValuesPerToken(layer);
}

/** Cache bytes per token over all layers at a given element size (4 for f32). */
export function kvBytesPerToken(cfg: ModelConfig, bytesPerValue = 4): number {
  return cfg.layers.reduce((a, l) => a + kvValuesPerToken(l) * bytesPerValue, 0);
}

// Tensor names and shapes of every model, in the HF / DeepSeek-V3 layout (the native save format).
// Legend: V vocab, C hidden, I intermediate, H heads, Hkv kv heads, D head dim, R kv rank, Dr rope dims,
// Dn nope dims, Dv value dims, Rq q rank.

import type { GqaAttention, LayerAttention, MlaAttention, ModelConfig } from './config.js';

export interface TensorSpec {
  name: string;
  shape: number[];
}

export const layerPrefix = (i: number): string => `model.layers.${i}`;

/** Attention tensors of one original (GQA/MHA) layer. */
export function gqaTensors(cfg: ModelConfig, i: number, a: GqaAttention): TensorSpec[] {
  const p = `${layerPrefix(i)}.self_attn`;
  const { numHeads: H, hiddenSize: C } = cfg;
  const { numKvHeads: Hkv, headDim: D } = a;
  const specs: TensorSpec[] = [
    { name: `${p}.q_proj.weight`, shape: [H * D, C] },
    { name: `${p}.k_proj.weight`, shape: [Hkv * D, C] },
    { name: `${p}.v_proj.weight`, shape: [Hkv * D, C] },
    { name: `${p}.o_proj.weight`, shape: [C, H * D] },
  ];
  if (a.qkvBias) {
    specs.push(
      { name: `${p}.q_proj.bias`, shape: [H * D] },
      { name: `${p}.k_proj.bias`, shape: [Hkv * D] },
      { name: `${p}.v_proj.bias`, shape: [Hkv * D] },
    );
  }
  return specs;
}

/** Attention tensors of one MLA layer (DeepSeek-V3 names). */
export function mlaTensors(cfg: ModelConfig, i: number, a: MlaAttention): TensorSpec[] {
  const p = `${layerPrefix(i)}.self_attn`;
  const { numHeads: H, hiddenSize: C } = cfg;
  const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv, qRank } = a;
  const specs: TensorSpec[] = [];
  if (qRank === null) {
    specs.push({ name: `${p}.q_proj.weight`, shape: [H * (Dn + Dr), C] });
    if (a.bias) specs.push({ name: `${p}.q_proj.bias`, shape: [H * (Dn + Dr)] });
  } else {
    specs.push(
      { name: `${p}.q_a_proj.weight`, shape: [qRank, C] },
      { name: `${p}.q_a_layernorm.weight`, shape: [qRank] },
      { name: `${p}.q_b_proj.weight`, shape: [H * (Dn + Dr), qRank] },
    );
  }
  specs.push({ name: `${p}.kv_a_proj_with_mqa.weight`, shape: [R + Dr, C] });
  if (a.bias) specs.push({ name: `${p}.kv_a_proj_with_mqa.bias`, shape: [R + Dr] });
  if (a.latentNorm) specs.push({ name: `${p}.kv_a_layernorm.weight`, shape: [R] });
  specs.push(
    { name: `${p}.kv_b_proj.weight`, shape: [H * (Dn + Dv), R] },
    { name: `${p}.o_proj.weight`, shape: [C, H * Dv] },
  );
  return specs;
}

export function attentionTensors(cfg: ModelConfig, i: number, a: LayerAttention): TensorSpec[] {
  return a.kind === 'mla' ? mlaTensors(cfg, i, a) : gqaTensors(cfg, i, a);
}

/** Every tensor of a model, in a stable order. */
export function modelTensors(cfg: ModelConfig): TensorSpec[] {
  const { vocabSize: V, hiddenSize: C, intermediateSize: I } = cfg;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [V, C] }];
  cfg.layers.forEach((a, i) => {
    const p = layerPrefix(i);
    specs.push({ name: `${p}.input_layernorm.weight`, shape: [C] });
    specs.push(...attentionTensors(cfg, i, a));
    specs.push(
      { name: `${p}.post_attention_layernorm.weight`, shape: [C] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, C] },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, C] },
      { name: `${p}.mlp.down_proj.weight`, shape: [C, I] },
    );
  });
  specs.push({ name: 'model.norm.weight', shape: [C] });
  if (!cfg.tieEmbeddings) specs.push({ name: 'lm_head.weight', shape: [V, C] });
  return specs;
}

/** Parameter count of a config (tied embeddings counted once). */
export function parameterCount(cfg: ModelConfig): number {
  return modelTensors(cfg).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
}

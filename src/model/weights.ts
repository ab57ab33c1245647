// Tensor names and shapes of every model, in the HF / DeepSeek-V3 layout (the native save format).
// Legend: V vocab, C hidden, I intermediate, H heads, Hkv kv heads, D head dim, R kv rank, Dr rope dims,
// Dn nope dims, Dv value dims, Rq q rank.

import type { LayerAttention, ModelConfig } from './config.js';
import { layerPrefix } from './names.js';
import { attentionKind } from './attention/index.js';

export interface TensorSpec {
  name: string;
  shape: number[];
}

export { layerPrefix } from './names.js';

/** The attention tensors of layer i, from its kind's module (model/attention/). */
export function attentionTensors(cfg: ModelConfig, i: number, a: LayerAttention): TensorSpec[] {
  return attentionKind(a).tensors(cfg, i, a);
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

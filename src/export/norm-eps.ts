// transformers builds DeepSeek-V3's kv_a_layernorm and q_a_layernorm with eps 1e-6 whatever rms_norm_eps says, while
// vLLM, SGLang, llama.cpp and our engine use rms_norm_eps for them. One export exact in all of them: set
// rms_norm_eps = 1e-6 and rescale so every RMSNorm sees its input scaled by α = sqrt(1e-6 / eps):
//   RMSNorm_{α²·eps}(α·x)·w = α·x / sqrt(α²·mean(x²) + α²·eps)·w = RMSNorm_eps(x)·w.
// The residual stream is scaled by α (embeddings, and the attention output and down_proj rows that add into it), so
// every input/post-attention/final norm sees α·h; rows that feed a norm inside the attention are scaled by α too
// (MLA: the latent rows of kv_a_proj_with_mqa and q_a_proj; their inputs are normalised, not scaled). Which
// attention tensors those are is the kind's (export/kinds/ normEpsScaled). lm_head reads the final norm's output and
// keeps its weights, so tied embeddings are untied.
// Legend: V vocab, C hidden, R kv rank, Dr rope dims, Rq q rank.

import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { layerPrefix } from '../model/weights.js';
import { UserError } from '../errors.js';
import { exportKind } from './kinds/index.js';

/** The eps transformers' DeepseekV3Attention gives its latent norms (DeepseekV3RMSNorm's default). */
export const TRANSFORMERS_LATENT_EPS = 1e-6;

const f32 = (t: Tensor): Float32Array => t.toF32();

function scaled(t: Tensor, alpha: number, rows?: number): Tensor {
  const d = f32(t);
  const out = d.slice();
  const cols = t.shape.length === 2 ? t.shape[1]! : 1;
  const n = rows === undefined ? out.length : rows * cols;
  for (let i = 0; i < n; i++) out[i] = d[i]! * alpha;
  return new Tensor(t.shape, out);
}

/**
 * The same function with rms_norm_eps = `eps` (see the file header); unchanged when it already is. Returns copies.
 * Biases of the scaled rows are left as they are: for models in a stock layout, which has none there.
 */
export function rescaleNormEps(cfg: ModelConfig, weights: Map<string, Tensor>, eps = TRANSFORMERS_LATENT_EPS): { config: ModelConfig; weights: Map<string, Tensor>; alpha: number } {
  if (cfg.rmsNormEps === eps) return { config: cfg, weights, alpha: 1 };
  const alpha = Math.sqrt(eps / cfg.rmsNormEps);
  const w = new Map(weights);
  const need = (n: string): Tensor => {
    const t = w.get(n);
    if (!t) throw new UserError(`export: tensor ${n}: missing`);
    return t;
  };
  const embed = need('model.embed_tokens.weight');
  if (cfg.tieEmbeddings) w.set('lm_head.weight', embed);
  w.set('model.embed_tokens.weight', scaled(embed, alpha));
  cfg.layers.forEach((a, i) => {
    for (const { name, rows } of exportKind(a).normEpsScaled(cfg, i, a)) w.set(name, scaled(need(name), alpha, rows));
    const down = `${layerPrefix(i)}.mlp.down_proj.weight`;
    w.set(down, scaled(need(down), alpha));
  });
  return { config: { ...cfg, rmsNormEps: eps, tieEmbeddings: false }, weights: w, alpha };
}

// Export of MLA attention: llama.cpp's `deepseek2` architecture (MLA mode, latent-only K cache of R+Dr per token per
// layer) for a model in the stock MLA layout (mla-stock.ts brings it there or refuses with every reason):
// attn_q / attn_kv_a_mqa [latent R | rope Dr] / attn_kv_a_norm / attn_k_b {Dn, R, H} (per head the transposed
// k-part of kv_b) / attn_v_b {R, Dv, H} (per head the v-part) / attn_output; every layer dense
// (leading_dense_block_count = L); softmax scale 1/sqrt(Dn+Dr).
// Legend: C hidden, L layers, H heads, R kv rank, Dr rope dims, Dn nope dims, Dv value dims, Rq q rank.

import type { Tensor } from '../../tensor/tensor.js';
import type { MlaAttention, ModelConfig } from '../../model/config.js';
import { layerPrefix } from '../../model/weights.js';
import { geometricFit } from '../../io/deepseek.js';
import { kv, type GgufValue } from '../../io/gguf.js';
import { addCommon, commonKvs, get, q8Fallback, TensorList, type GgufDtype, type GgufPlan } from '../gguf-tensors.js';
import { servingVerdicts, toStockMla } from './mla-stock.js';
import type { ExportKind } from './index.js';

/**
 * The factor llama.cpp's deepseek2 multiplies its softmax scale by under rope scaling with factor f (no YaRN
 * keys): mscale = attn_factor·(1 + 0.1·ln f) with attn_factor 1 and yarn_log_multiplier 0, squared.
 */
export function llamaCppDeepseek2Mscale2(factor: number): number {
  const m = 1 + 0.1 * Math.log(factor);
  return m * m;
}

/** An all-MLA model as llama.cpp's `deepseek2` architecture (MLA mode: key_length_mla present). */
export function deepseek2Plan(
  cfg0: ModelConfig, w0: Map<string, Tensor>, dtype: GgufDtype, padRanks: boolean, name: string, source: string, ropeTolerance?: number,
): GgufPlan {
  const stock = toStockMla(cfg0, w0, 'gguf', padRanks, source, ropeTolerance);
  const { config: cfg, weights: w } = stock;
  const notes = [...stock.notes];
  const a = cfg.layers[0] as MlaAttention;
  const { hiddenSize: C, numHeads: H } = cfg;
  const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv, qRank } = a;
  const fit = geometricFit(a.ropeInvFreq)!;
  const linear = Math.abs(fit.factor - 1) > 1e-9;
  // llama.cpp's deepseek2 graph (verified with the llama.cpp bundled in node-llama-cpp 3.22.1) applies a linear
  // rope scaling factor f to the angles exactly, but also multiplies the softmax scale by mscale² =
  // (1 + 0.1·ln f)², a YaRN correction it applies whatever the scaling type. Dividing q by mscale² cancels it.
  const qScale = linear ? 1 / llamaCppDeepseek2Mscale2(fit.factor) : 1;
  const q = (t: Float32Array): Float32Array => (qScale === 1 ? t : t.map((x) => x * qScale));
  const list = new TensorList(dtype);
  addCommon(list, cfg, w, (i) => {
    const p = `${layerPrefix(i)}.self_attn`;
    if (qRank === null) {
      list.add(`blk.${i}.attn_q.weight`, [C, H * (Dn + Dr)], q(get(w, `${p}.q_proj.weight`)));
    } else {
      list.add(`blk.${i}.attn_q_a.weight`, [C, qRank], get(w, `${p}.q_a_proj.weight`));
      list.add(`blk.${i}.attn_q_a_norm.weight`, [qRank], get(w, `${p}.q_a_layernorm.weight`));
      list.add(`blk.${i}.attn_q_b.weight`, [qRank, H * (Dn + Dr)], q(get(w, `${p}.q_b_proj.weight`)));
    }
    list.add(`blk.${i}.attn_kv_a_mqa.weight`, [C, R + Dr], get(w, `${p}.kv_a_proj_with_mqa.weight`));
    list.add(`blk.${i}.attn_kv_a_norm.weight`, [R], get(w, `${p}.kv_a_layernorm.weight`));
    // kv_b (H(Dn+Dv), R): head h rows [k_nope Dn | v Dv]. k_b row-major (H, R, Dn) = per head the k-part
    // transposed; v_b row-major (H, Dv, R) = per head the v-part as is.
    const kvb = get(w, `${p}.kv_b_proj.weight`);
    const kb = new Float32Array(H * R * Dn);
    const vb = new Float32Array(H * Dv * R);
    for (let h = 0; h < H; h++) {
      const row0 = h * (Dn + Dv);
      for (let d = 0; d < Dn; d++) for (let r = 0; r < R; r++) kb[(h * R + r) * Dn + d] = kvb[(row0 + d) * R + r]!;
      vb.set(kvb.subarray((row0 + Dn) * R, (row0 + Dn + Dv) * R), h * Dv * R);
    }
    list.add(`blk.${i}.attn_k_b.weight`, [Dn, R, H], kb);
    list.add(`blk.${i}.attn_v_b.weight`, [R, Dv, H], vb);
    list.add(`blk.${i}.attn_output.weight`, [H * Dv, C], get(w, `${p}.o_proj.weight`));
  });
  const arch = 'deepseek2';
  const metadata = new Map<string, GgufValue>([
    ...commonKvs(arch, cfg, dtype, name),
    [`${arch}.attention.head_count_kv`, kv.u32(1)],
    [`${arch}.attention.key_length`, kv.u32(R + Dr)],
    [`${arch}.attention.value_length`, kv.u32(R)],
    [`${arch}.attention.key_length_mla`, kv.u32(Dn + Dr)],
    [`${arch}.attention.value_length_mla`, kv.u32(Dv)],
    [`${arch}.attention.q_lora_rank`, kv.u32(qRank ?? 0)],
    [`${arch}.attention.kv_lora_rank`, kv.u32(R)],
    [`${arch}.rope.dimension_count`, kv.u32(Dr)],
    [`${arch}.rope.freq_base`, kv.f32(fit.base)],
    [`${arch}.leading_dense_block_count`, kv.u32(cfg.numLayers)],
    [`${arch}.expert_feed_forward_length`, kv.u32(0)],
    [`${arch}.expert_shared_count`, kv.u32(0)],
    [`${arch}.expert_count`, kv.u32(0)],
    [`${arch}.expert_used_count`, kv.u32(0)],
  ]);
  if (linear) {
    metadata.set(`${arch}.rope.scaling.type`, kv.str('linear'));
    metadata.set(`${arch}.rope.scaling.factor`, kv.f32(fit.factor));
    notes.push(
      `rope: base ${fit.base.toPrecision(6)} with linear scaling factor ${fit.factor.toPrecision(6)}; q divided by ` +
        `${(1 / qScale).toPrecision(6)} to cancel the YaRN attention factor llama.cpp's deepseek2 applies to any rope scaling`,
    );
  }
  notes.push(...q8Fallback(list));
  notes.push(...servingVerdicts(cfg, 'gguf'));
  return { arch, metadata, tensors: list.tensors, notes };
}

export const mla: ExportKind<MlaAttention> = {
  refused: null,

  gguf: (cfg, weights, opts) => deepseek2Plan(cfg, weights, opts.dtype, opts.padRanks, opts.name, opts.source, opts.ropeTolerance),

  // o_proj adds into the residual stream; the latent rows of kv_a_proj_with_mqa and q_a_proj feed the latent norms
  // (kv_a_layernorm, q_a_layernorm). The rope rows of kv_a are not normalised and keep their scale.
  normEpsScaled(_cfg, i, a) {
    const p = `${layerPrefix(i)}.self_attn`;
    const out = [{ name: `${p}.o_proj.weight` }, { name: `${p}.kv_a_proj_with_mqa.weight`, rows: a.kvRank }];
    if (a.qRank !== null) out.push({ name: `${p}.q_a_proj.weight` });
    return out;
  },
};

// Export of GQA/MHA attention (Llama / Qwen2 / Mistral layers): llama.cpp's `llama` architecture for a model whose
// layers all share one geometry. Rope is NORM (adjacent pairs) there: half-split (HF) q/k rows are reordered per
// head, as llama.cpp's convert_hf_to_gguf does; llama2.c models are already adjacent. Frequencies other than
// theta^(-2i/D) are written as rope_freqs.weight (llama.cpp divides each pair's frequency by it).
// Legend: C hidden, H heads, Hkv kv heads, D head dim.

import { UserError } from '../../errors.js';
import type { Tensor } from '../../tensor/tensor.js';
import { defaultInvFreq, type GqaAttention, type ModelConfig } from '../../model/config.js';
import { layerPrefix } from '../../model/weights.js';
import { kv, type GgufValue } from '../../io/gguf.js';
import { addCommon, commonKvs, get, q8Fallback, TensorList, type GgufDtype, type GgufPlan } from '../gguf-tensors.js';
import { toAdjacentPairing } from '../stock.js';
import type { ExportKind } from './index.js';

/** One GQA geometry for every layer (llama.cpp's llama architecture), or a reason. */
export function uniformGqa(cfg: ModelConfig): GqaAttention | string {
  const layers = cfg.layers.filter((a): a is GqaAttention => a.kind === 'gqa');
  if (layers.length !== cfg.layers.length) return 'hybrid model (GQA and MLA layers)';
  const first = layers[0];
  if (!first) return 'the model has no layers';
  const differ = layers.some((a) => a.numKvHeads !== first.numKvHeads || a.headDim !== first.headDim || a.qkvBias !== first.qkvBias);
  return differ ? 'per-layer attention geometry (kv heads, head dim or bias differ between layers)' : first;
}

/** An all-GQA model as llama.cpp's `llama` architecture. */
export function llamaPlan(cfg0: ModelConfig, w0: Map<string, Tensor>, a: GqaAttention, dtype: GgufDtype, name: string): GgufPlan {
  const notes: string[] = [];
  if (cfg0.ropePairing === 'half') notes.push('rope rows of q and k reordered from half-split to adjacent pairs (llama.cpp NORM rope), exact');
  const { config: cfg, weights: w } = toAdjacentPairing(cfg0, w0);
  const { hiddenSize: C, numHeads: H } = cfg;
  const { numKvHeads: Hkv, headDim: D } = a;
  const list = new TensorList(dtype);
  // llama.cpp: theta_j = pos · base^(−2j/D) / rope_freqs[j]; ours: pos · invFreq[j].
  const base = defaultInvFreq(cfg.ropeTheta, D);
  const factors = base.map((b, j) => b / cfg.ropeInvFreq[j]!);
  const needFactors = factors.some((f) => Math.abs(f - 1) > 1e-7);
  if (needFactors) {
    list.add('rope_freqs.weight', [D / 2], Float32Array.from(factors));
    notes.push('rope frequencies differ from theta^(-2i/D) (rope scaling): written as rope_freqs.weight');
  }
  addCommon(list, cfg, w, (i) => {
    const p = `${layerPrefix(i)}.self_attn`;
    list.add(`blk.${i}.attn_q.weight`, [C, H * D], get(w, `${p}.q_proj.weight`));
    list.add(`blk.${i}.attn_k.weight`, [C, Hkv * D], get(w, `${p}.k_proj.weight`));
    list.add(`blk.${i}.attn_v.weight`, [C, Hkv * D], get(w, `${p}.v_proj.weight`));
    if (a.qkvBias) {
      list.add(`blk.${i}.attn_q.bias`, [H * D], get(w, `${p}.q_proj.bias`));
      list.add(`blk.${i}.attn_k.bias`, [Hkv * D], get(w, `${p}.k_proj.bias`));
      list.add(`blk.${i}.attn_v.bias`, [Hkv * D], get(w, `${p}.v_proj.bias`));
    }
    list.add(`blk.${i}.attn_output.weight`, [H * D, C], get(w, `${p}.o_proj.weight`));
  });
  const metadata = new Map<string, GgufValue>([
    ...commonKvs('llama', cfg, dtype, name),
    ['llama.attention.head_count_kv', kv.u32(Hkv)],
    ['llama.attention.key_length', kv.u32(D)],
    ['llama.attention.value_length', kv.u32(D)],
    ['llama.rope.dimension_count', kv.u32(D)],
    ['llama.rope.freq_base', kv.f32(cfg.ropeTheta)],
  ]);
  notes.push(...q8Fallback(list));
  return { arch: 'llama', metadata, tensors: list.tensors, notes };
}

export const gqa: ExportKind<GqaAttention> = {
  refused: null,

  gguf(cfg, weights, opts) {
    const a = uniformGqa(cfg);
    if (typeof a === 'string') throw new UserError(`${opts.source}: cannot export to GGUF (llama): ${a}; llama.cpp's llama architecture has one attention geometry`);
    return llamaPlan(cfg, weights, a, opts.dtype, opts.name);
  },

  // q/k/v read the normalised input (unchanged under the rescale); only o_proj adds into the residual stream.
  normEpsScaled: (_cfg, i) => [{ name: `${layerPrefix(i)}.self_attn.o_proj.weight` }],
};

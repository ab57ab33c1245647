// Export to GGUF for llama.cpp: an all-GQA model as architecture `llama`, an all-MLA model as `deepseek2` with
// the latent-only (K-only, R+Dr per token per layer) cache. GGUF dims are fastest-first, so a row-major
// (out, in) weight is written as {in, out} with the same bytes.
//   llama: rope is NORM (adjacent pairs): half-split (HF) q/k rows are reordered per head, as llama.cpp's
//          convert_hf_to_gguf does; llama2.c models are already adjacent. Frequencies other than
//          theta^(-2i/D) are written as rope_freqs.weight (llama.cpp divides each pair's frequency by it).
//   deepseek2: attn_q / attn_kv_a_mqa [latent R | rope Dr] / attn_kv_a_norm / attn_k_b {Dn, R, H} (per head
//          the transposed k-part of kv_b) / attn_v_b {R, Dv, H} (per head the v-part) / attn_output; every
//          layer dense (leading_dense_block_count = L); softmax scale 1/sqrt(Dn+Dr) in both.
// Legend: V vocab, C hidden, I intermediate, L layers, H heads, Hkv kv heads, D head dim, R kv rank, Dr rope
// dims, Dn nope dims, Dv value dims, Rq q rank.

import { GGUF_WRITER_KEY } from '../io/output.js';
import { basename } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { defaultInvFreq, type GqaAttention, type MlaAttention, type ModelConfig } from '../model/config.js';
import { layerPrefix } from '../model/weights.js';
import { geometricFit } from '../io/deepseek.js';
import { UserError } from '../errors.js';
import { kv, writeGguf, QK8_0, type GgmlTypeName, type GgufTensorIn, type GgufValue } from '../io/gguf.js';
import { padVocab, vocabKvs, type GgufVocab } from './gguf-vocab.js';
import { toAdjacentPairing, toStockMla, uniformGqa } from './stock.js';
import { servingVerdicts } from '../convert/plan.js';

export type GgufDtype = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const GGUF_DTYPES: readonly GgufDtype[] = ['f32', 'f16', 'bf16', 'q8_0'];

const WEIGHT_TYPE: Record<GgufDtype, GgmlTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' };
/** llama.cpp's general.file_type (enum llama_ftype). */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

export interface GgufExportOptions {
  dtype?: GgufDtype;
  /** Pad per-layer kv ranks to the largest (exact). */
  padRanks?: boolean;
  vocab: GgufVocab;
  /** general.name (default: the source's base name). */
  name?: string;
  /** Names the model in messages. */
  source?: string;
  /** Largest relative logit error a rope fit may cost (rope-fit.ts). */
  ropeTolerance?: number;
}

export interface GgufPlan {
  arch: 'llama' | 'deepseek2';
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorIn[];
  notes: string[];
}

const f32 = (t: Tensor): Float32Array => t.toF32();

/**
 * Tensor storage for the dtype: vectors (norms, biases, rope factors) stay F32 as llama.cpp's converter keeps
 * them; Q8_0 needs rows that are a multiple of 32 long, else the tensor is written F16.
 */
class TensorList {
  readonly tensors: GgufTensorIn[] = [];
  readonly fallback: string[] = [];
  constructor(private readonly dtype: GgufDtype) {}

  add(name: string, dims: number[], data: Float32Array): void {
    let type: GgmlTypeName = dims.length === 1 ? 'F32' : WEIGHT_TYPE[this.dtype];
    if (type === 'Q8_0' && dims[0]! % QK8_0 !== 0) {
      type = 'F16';
      this.fallback.push(name);
    }
    this.tensors.push({ name, dims, type, data });
  }
}

function get(w: Map<string, Tensor>, name: string): Float32Array {
  const t = w.get(name);
  if (!t) throw new UserError(`export: tensor ${name}: missing`);
  return f32(t);
}

/** Embedding, norms, FFN and output: shared by both architectures. */
function addCommon(list: TensorList, cfg: ModelConfig, w: Map<string, Tensor>, perLayer: (i: number) => void): void {
  const { vocabSize: V, hiddenSize: C, intermediateSize: I } = cfg;
  list.add('token_embd.weight', [C, V], get(w, 'model.embed_tokens.weight'));
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = layerPrefix(i);
    list.add(`blk.${i}.attn_norm.weight`, [C], get(w, `${p}.input_layernorm.weight`));
    perLayer(i);
    list.add(`blk.${i}.ffn_norm.weight`, [C], get(w, `${p}.post_attention_layernorm.weight`));
    list.add(`blk.${i}.ffn_gate.weight`, [C, I], get(w, `${p}.mlp.gate_proj.weight`));
    list.add(`blk.${i}.ffn_up.weight`, [C, I], get(w, `${p}.mlp.up_proj.weight`));
    list.add(`blk.${i}.ffn_down.weight`, [I, C], get(w, `${p}.mlp.down_proj.weight`));
  }
  list.add('output_norm.weight', [C], get(w, 'model.norm.weight'));
  if (!cfg.tieEmbeddings) list.add('output.weight', [C, V], get(w, 'lm_head.weight'));
}

function commonKvs(arch: string, cfg: ModelConfig, dtype: GgufDtype, name: string): [string, GgufValue][] {
  return [
    ['general.architecture', kv.str(arch)],
    ['general.name', kv.str(name)],
    ['general.file_type', kv.u32(FILE_TYPE[dtype])],
    ['general.alignment', kv.u32(32)],
    // Marks the file as ours: --overwrite replaces only GGUF files that carry it (io/output.ts).
    [GGUF_WRITER_KEY, kv.str('mla-upcycle')],
    [`${arch}.vocab_size`, kv.u32(cfg.vocabSize)],
    [`${arch}.context_length`, kv.u32(cfg.maxPositions)],
    [`${arch}.embedding_length`, kv.u32(cfg.hiddenSize)],
    [`${arch}.block_count`, kv.u32(cfg.numLayers)],
    [`${arch}.feed_forward_length`, kv.u32(cfg.intermediateSize)],
    [`${arch}.attention.head_count`, kv.u32(cfg.numHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, kv.f32(cfg.rmsNormEps)],
  ];
}

/** An all-GQA model as llama.cpp's `llama` architecture. */
function llamaPlan(cfg0: ModelConfig, w0: Map<string, Tensor>, a: GqaAttention, dtype: GgufDtype, name: string): GgufPlan {
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
  if (list.fallback.length > 0) notes.push(`q8_0: ${list.fallback.length} tensor(s) with rows not a multiple of 32 written as f16 (${list.fallback.slice(0, 3).join(', ')}${list.fallback.length > 3 ? ', …' : ''})`);
  return { arch: 'llama', metadata, tensors: list.tensors, notes };
}

/**
 * The factor llama.cpp's deepseek2 multiplies its softmax scale by under rope scaling with factor f (no YaRN
 * keys): mscale = attn_factor·(1 + 0.1·ln f) with attn_factor 1 and yarn_log_multiplier 0, squared.
 */
export function llamaCppDeepseek2Mscale2(factor: number): number {
  const m = 1 + 0.1 * Math.log(factor);
  return m * m;
}

/** An all-MLA model as llama.cpp's `deepseek2` architecture (MLA mode: key_length_mla present). */
function deepseek2Plan(
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
  if (list.fallback.length > 0) notes.push(`q8_0: ${list.fallback.length} tensor(s) with rows not a multiple of 32 written as f16 (${list.fallback.slice(0, 3).join(', ')}${list.fallback.length > 3 ? ', …' : ''})`);
  notes.push(...servingVerdicts(cfg, 'gguf'));
  return { arch, metadata, tensors: list.tensors, notes };
}

/** Plan a GGUF export (metadata + tensors), refusing what llama.cpp cannot run with the reason and what to do. */
export function planGguf(cfg: ModelConfig, weights: Map<string, Tensor>, opts: GgufExportOptions): GgufPlan {
  const dtype = opts.dtype ?? 'f32';
  const source = opts.source ?? 'model';
  const name = opts.name ?? basename(source).replace(/\.(bin|gguf)$/, '');
  const vocab = padVocab(opts.vocab, cfg.vocabSize);
  const allGqa = cfg.layers.every((a) => a.kind === 'gqa');
  let plan: GgufPlan;
  if (allGqa) {
    const a = uniformGqa(cfg);
    if (typeof a === 'string') throw new UserError(`${source}: cannot export to GGUF (llama): ${a}; llama.cpp's llama architecture has one attention geometry`);
    plan = llamaPlan(cfg, weights, a, dtype, name);
  } else {
    plan = deepseek2Plan(cfg, weights, dtype, opts.padRanks ?? false, name, source, opts.ropeTolerance);
  }
  for (const [k, v] of vocabKvs(vocab)) plan.metadata.set(k, v);
  plan.notes.push(...vocab.notes);
  return plan;
}

/** Write a model as a GGUF file (atomically). Returns the plan (architecture, tensors, notes) for reporting. */
export function exportGguf(file: string, cfg: ModelConfig, weights: Map<string, Tensor>, opts: GgufExportOptions): GgufPlan {
  const plan = planGguf(cfg, weights, opts);
  writeGguf(file, plan.metadata, plan.tensors);
  return plan;
}

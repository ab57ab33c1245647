// What every GGUF export shares, whatever the attention kind: weight dtypes, the tensor list (Q8_0 with its F16
// fallback), the embedding / norm / FFN / output tensors and the common metadata. The attention tensors and keys of
// each llama.cpp architecture come from the kind's module (export/kinds/). GGUF dims are fastest-first, so a
// row-major (out, in) weight is written as {in, out} with the same bytes.
// Legend: V vocab, C hidden, I intermediate.

import { GGUF_WRITER_KEY } from '../io/output.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { layerPrefix } from '../model/weights.js';
import { UserError } from '../errors.js';
import { kv, QK8_0, type GgmlTypeName, type GgufTensorIn, type GgufValue } from '../io/gguf.js';

export type GgufDtype = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const GGUF_DTYPES: readonly GgufDtype[] = ['f32', 'f16', 'bf16', 'q8_0'];

const WEIGHT_TYPE: Record<GgufDtype, GgmlTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' };
/** llama.cpp's general.file_type (enum llama_ftype). */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

/** A GGUF file to write: llama.cpp architecture, metadata and tensors, and what the export changed. */
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
export class TensorList {
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

export function get(w: Map<string, Tensor>, name: string): Float32Array {
  const t = w.get(name);
  if (!t) throw new UserError(`export: tensor ${name}: missing`);
  return f32(t);
}

/** Embedding, norms, FFN and output: shared by both architectures. */
export function addCommon(list: TensorList, cfg: ModelConfig, w: Map<string, Tensor>, perLayer: (i: number) => void): void {
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

export function commonKvs(arch: string, cfg: ModelConfig, dtype: GgufDtype, name: string): [string, GgufValue][] {
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

/** The note for tensors Q8_0 could not hold (none when every row fit). */
export function q8Fallback(list: TensorList): string[] {
  const f = list.fallback;
  return f.length > 0 ? [`q8_0: ${f.length} tensor(s) with rows not a multiple of 32 written as f16 (${f.slice(0, 3).join(', ')}${f.length > 3 ? ', …' : ''})`] : [];
}

// Read a GGUF file written by gguf-export.ts (architecture llama or deepseek2) back into a ModelConfig and
// HF/DeepSeek-named weights, so an export can be checked against the original by running both through our
// own forward. Rope comes back as adjacent pairs (the file's layout); the function is the same.
// Legend: as in gguf-export.ts.

import { Tensor } from '../tensor/tensor.js';
import { defaultInvFreq, type LayerAttention, type ModelConfig } from '../model/config.js';
import { layerPrefix } from '../model/weights.js';
import { geometricInvFreq } from '../io/deepseek.js';
import { formatError } from '../errors.js';
import { ggufTensorToF32, readGguf, type GgufValue } from '../io/gguf.js';
import { llamaCppDeepseek2Mscale2 } from './kinds/mla.js';

export interface GgufModel {
  config: ModelConfig;
  weights: Map<string, Tensor>;
  metadata: Map<string, GgufValue>;
  /** tokenizer.ggml.tokens, when present. */
  tokens: string[] | null;
}

/** Read a llama / deepseek2 GGUF into our layout (values widened to f32; Q8_0 dequantised). */
export function importGguf(file: string): GgufModel {
  const g = readGguf(file);
  const md = g.kvs;
  const val = (key: string): GgufValue => {
    const v = md.get(key);
    if (!v) throw formatError(file, `metadata "${key}"`, 'missing');
    return v;
  };
  const num = (key: string, fallback?: number): number => {
    const v = md.get(key);
    if (!v) {
      if (fallback !== undefined) return fallback;
      throw formatError(file, `metadata "${key}"`, 'missing');
    }
    if (typeof v.value !== 'number') throw formatError(file, `metadata "${key}"`, `expected a number, got ${v.type}`);
    return v.value;
  };
  const archV = val('general.architecture');
  const arch = archV.type === 'string' ? archV.value : '';
  if (arch !== 'llama' && arch !== 'deepseek2') throw formatError(file, 'metadata "general.architecture"', `expected "llama" or "deepseek2", got ${JSON.stringify(archV.value)}`);
  const info = new Map(g.tensors.map((t) => [t.name, t]));
  const tensor = (name: string, dims: number[]): Float32Array => {
    const t = info.get(name);
    if (!t) throw formatError(file, `tensor "${name}"`, 'missing');
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      throw formatError(file, `tensor "${name}"`, `expected dims {${dims.join(', ')}}, found {${t.dims.join(', ')}}`);
    }
    return ggufTensorToF32(t, g.data.get(name)!);
  };
  const L = num(`${arch}.block_count`);
  const C = num(`${arch}.embedding_length`);
  const I = num(`${arch}.feed_forward_length`);
  const H = num(`${arch}.attention.head_count`);
  const tokV = md.get('tokenizer.ggml.tokens');
  const tokens = tokV && tokV.type === 'array' ? (tokV.value as string[]) : null;
  const embd = info.get('token_embd.weight');
  if (!embd) throw formatError(file, 'tensor "token_embd.weight"', 'missing');
  const V = embd.dims[1] ?? 0;
  const theta = num(`${arch}.rope.freq_base`, 10000);
  const w = new Map<string, Tensor>();
  const put = (name: string, shape: number[], data: Float32Array): void => void w.set(name, new Tensor(shape, data));
  let layers: LayerAttention[];
  let ropeInvFreq: number[];
  if (arch === 'llama') {
    const Hkv = num('llama.attention.head_count_kv', H);
    const D = num('llama.attention.key_length', C / H);
    const base = defaultInvFreq(theta, D);
    const ff = info.has('rope_freqs.weight') ? tensor('rope_freqs.weight', [D / 2]) : null;
    ropeInvFreq = base.map((b, j) => (ff ? b / ff[j]! : b));
    const bias = info.has('blk.0.attn_q.bias');
    layers = Array.from({ length: L }, () => ({ kind: 'gqa' as const, numKvHeads: Hkv, headDim: D, qkvBias: bias }));
    for (let i = 0; i < L; i++) {
      const p = `${layerPrefix(i)}.self_attn`;
      put(`${p}.q_proj.weight`, [H * D, C], tensor(`blk.${i}.attn_q.weight`, [C, H * D]));
      put(`${p}.k_proj.weight`, [Hkv * D, C], tensor(`blk.${i}.attn_k.weight`, [C, Hkv * D]));
      put(`${p}.v_proj.weight`, [Hkv * D, C], tensor(`blk.${i}.attn_v.weight`, [C, Hkv * D]));
      if (bias) {
        put(`${p}.q_proj.bias`, [H * D], tensor(`blk.${i}.attn_q.bias`, [H * D]));
        put(`${p}.k_proj.bias`, [Hkv * D], tensor(`blk.${i}.attn_k.bias`, [Hkv * D]));
        put(`${p}.v_proj.bias`, [Hkv * D], tensor(`blk.${i}.attn_v.bias`, [Hkv * D]));
      }
      put(`${p}.o_proj.weight`, [C, H * D], tensor(`blk.${i}.attn_output.weight`, [H * D, C]));
    }
  } else {
    const R = num('deepseek2.attention.kv_lora_rank');
    const Dr = num('deepseek2.rope.dimension_count');
    const Dn = num('deepseek2.attention.key_length_mla') - Dr;
    const Dv = num('deepseek2.attention.value_length_mla');
    const Rq = num('deepseek2.attention.q_lora_rank', 0);
    const st = md.get('deepseek2.rope.scaling.type');
    const factor = st && st.value === 'linear' ? num('deepseek2.rope.scaling.factor') : 1;
    ropeInvFreq = geometricInvFreq(theta, Dr, factor);
    // As llama.cpp runs it: under rope scaling its softmax scale carries mscale² (see gguf-export.ts).
    const qScale = factor === 1 ? 1 : llamaCppDeepseek2Mscale2(factor);
    const q = (t: Float32Array): Float32Array => (qScale === 1 ? t : t.map((x) => x * qScale));
    layers = Array.from({ length: L }, () => ({
      kind: 'mla' as const, kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv, qRank: Rq === 0 ? null : Rq, latentNorm: true, bias: false,
      ropeInvFreq: ropeInvFreq.slice(),
    }));
    for (let i = 0; i < L; i++) {
      const p = `${layerPrefix(i)}.self_attn`;
      if (Rq === 0) {
        put(`${p}.q_proj.weight`, [H * (Dn + Dr), C], q(tensor(`blk.${i}.attn_q.weight`, [C, H * (Dn + Dr)])));
      } else {
        put(`${p}.q_a_proj.weight`, [Rq, C], tensor(`blk.${i}.attn_q_a.weight`, [C, Rq]));
        put(`${p}.q_a_layernorm.weight`, [Rq], tensor(`blk.${i}.attn_q_a_norm.weight`, [Rq]));
        put(`${p}.q_b_proj.weight`, [H * (Dn + Dr), Rq], q(tensor(`blk.${i}.attn_q_b.weight`, [Rq, H * (Dn + Dr)])));
      }
      put(`${p}.kv_a_proj_with_mqa.weight`, [R + Dr, C], tensor(`blk.${i}.attn_kv_a_mqa.weight`, [C, R + Dr]));
      put(`${p}.kv_a_layernorm.weight`, [R], tensor(`blk.${i}.attn_kv_a_norm.weight`, [R]));
      const kb = tensor(`blk.${i}.attn_k_b.weight`, [Dn, R, H]); // row-major (H, R, Dn)
      const vb = tensor(`blk.${i}.attn_v_b.weight`, [R, Dv, H]); // row-major (H, Dv, R)
      const kvb = new Float32Array(H * (Dn + Dv) * R);
      for (let h = 0; h < H; h++) {
        const row0 = h * (Dn + Dv);
        for (let d = 0; d < Dn; d++) for (let r = 0; r < R; r++) kvb[(row0 + d) * R + r] = kb[(h * R + r) * Dn + d]!;
        kvb.set(vb.subarray(h * Dv * R, (h + 1) * Dv * R), (row0 + Dn) * R);
      }
      put(`${p}.kv_b_proj.weight`, [H * (Dn + Dv), R], kvb);
      put(`${p}.o_proj.weight`, [C, H * Dv], tensor(`blk.${i}.attn_output.weight`, [H * Dv, C]));
    }
  }
  put('model.embed_tokens.weight', [V, C], tensor('token_embd.weight', [C, V]));
  for (let i = 0; i < L; i++) {
    const p = layerPrefix(i);
    put(`${p}.input_layernorm.weight`, [C], tensor(`blk.${i}.attn_norm.weight`, [C]));
    put(`${p}.post_attention_layernorm.weight`, [C], tensor(`blk.${i}.ffn_norm.weight`, [C]));
    put(`${p}.mlp.gate_proj.weight`, [I, C], tensor(`blk.${i}.ffn_gate.weight`, [C, I]));
    put(`${p}.mlp.up_proj.weight`, [I, C], tensor(`blk.${i}.ffn_up.weight`, [C, I]));
    put(`${p}.mlp.down_proj.weight`, [C, I], tensor(`blk.${i}.ffn_down.weight`, [I, C]));
  }
  put('model.norm.weight', [C], tensor('output_norm.weight', [C]));
  const tied = !info.has('output.weight');
  if (!tied) put('lm_head.weight', [V, C], tensor('output.weight', [C, V]));
  const tokId = (key: string): number | null => {
    const v = md.get(key);
    return v && typeof v.value === 'number' ? v.value : null;
  };
  const config: ModelConfig = {
    arch: arch === 'llama' ? 'llama' : 'deepseek_v3',
    vocabSize: V,
    hiddenSize: C,
    intermediateSize: I,
    numLayers: L,
    numHeads: H,
    rmsNormEps: num(`${arch}.attention.layer_norm_rms_epsilon`),
    ropePairing: 'adjacent',
    ropeInvFreq,
    ropeTheta: theta,
    ropeScaling: null,
    maxPositions: num(`${arch}.context_length`, 2048),
    tieEmbeddings: tied,
    bosTokenId: tokId('tokenizer.ggml.bos_token_id'),
    eosTokenId: tokId('tokenizer.ggml.eos_token_id'),
    layers,
  };
  return { config, weights: w, metadata: md, tokens };
}

// A float64 transcription of transformers' DeepSeek-V3 forward (models/deepseek_v3/modeling_deepseek_v3.py, eager
// attention, dense MLP layers), written from that code and not from ours, reading an exported directory's
// config.json and model.safetensors as transformers would. What it copies on purpose:
//   - DeepseekV3RMSNorm: x · rsqrt(mean(x²) + eps) · w; kv_a_layernorm and q_a_layernorm are built with the default
//     eps 1e-6 (DeepseekV3Attention passes none), every other norm with config.rms_norm_eps;
//   - q: q_proj, or q_b_proj(q_a_layernorm(q_a_proj(x))); per head [q_nope (Dn) | q_pe (Dr)];
//   - kv_a_proj_with_mqa → [compressed (R) | k_pe (Dr)]; kv_b_proj(kv_a_layernorm(compressed)) per head [k_nope | v];
//   - rope_interleave: q_pe/k_pe viewed (Dr/2, 2), transposed (evens then odds), then rotate_half with
//     cos/sin = cat(freqs, freqs); inv_freq from rope_theta with rope_scaling default / linear / llama3;
//   - scaling = qk_head_dim^-0.5 (no mscale_all_dim here), causal softmax, o_proj; SiLU MLP; final norm; lm_head
//     or the tied embeddings.
// latentEps lets a test run it as vLLM/llama.cpp do (latent norms with rms_norm_eps) for contrast.
// Legend: T tokens, V vocab, C hidden, H heads, R kv rank, Dr rope dims, Dn nope dims, Dv value dims, Rq q rank.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors } from '../src/io/safetensors.js';

type Mat = { rows: number; cols: number; d: Float64Array };

/** y (T, rows) = x (T, cols) · Wᵀ. */
function linear(x: Float64Array, T: number, w: Mat): Float64Array {
  const y = new Float64Array(T * w.rows);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < w.rows; r++) {
      let s = 0;
      for (let c = 0; c < w.cols; c++) s += x[t * w.cols + c]! * w.d[r * w.cols + c]!;
      y[t * w.rows + r] = s;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, T: number, n: number, w: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    let ms = 0;
    for (let i = 0; i < n; i++) ms += x[t * n + i]! ** 2;
    const r = 1 / Math.sqrt(ms / n + eps);
    for (let i = 0; i < n; i++) y[t * n + i] = x[t * n + i]! * r * w[i]!;
  }
  return y;
}

/** transformers' rope init functions for default, linear and llama3 (modeling_rope_utils.py). */
function invFreq(theta: number, dim: number, scaling: Record<string, number | string> | null): number[] {
  const base = Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));
  const type = scaling ? String(scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  if (type === 'default') return base;
  if (type === 'linear') return base.map((f) => f / Number(scaling!.factor));
  if (type !== 'llama3') throw new Error(`transcription: rope type ${type} not transcribed`);
  const factor = Number(scaling!.factor);
  const low = Number(scaling!.low_freq_factor);
  const high = Number(scaling!.high_freq_factor);
  const old = Number(scaling!.original_max_position_embeddings);
  const lowWl = old / low;
  const highWl = old / high;
  return base.map((f) => {
    const wl = (2 * Math.PI) / f;
    let g = wl > lowWl ? f / factor : f;
    const smooth = (old / wl - low) / (high - low);
    const medium = !(wl < highWl) && !(wl > lowWl);
    if (medium) g = (1 - smooth) * (g / factor) + smooth * g;
    return g;
  });
}

/** Logits (T, V) of transformers' DeepseekV3ForCausalLM on `ids`, in float64. */
export function transformersDeepseekV3Logits(dir: string, ids: number[], opts: { latentEps?: 'transformers' | 'config' } = {}): Float64Array {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
  const get = (n: string): Float64Array => {
    const t = tensors.get(n);
    if (!t) throw new Error(`transcription: ${n} missing`);
    return Float64Array.from(t.data);
  };
  const mat = (n: string): Mat => {
    const t = tensors.get(n);
    if (!t || t.shape.length !== 2) throw new Error(`transcription: ${n} missing or not 2-D`);
    return { rows: t.shape[0]!, cols: t.shape[1]!, d: Float64Array.from(t.data) };
  };
  const num = (k: string): number => cfg[k] as number;
  const C = num('hidden_size');
  const H = num('num_attention_heads');
  const L = num('num_hidden_layers');
  const V = num('vocab_size');
  const R = num('kv_lora_rank');
  const Dr = num('qk_rope_head_dim');
  const Dn = num('qk_nope_head_dim');
  const Dv = num('v_head_dim');
  const Dq = Dn + Dr;
  const eps = num('rms_norm_eps');
  const latentEps = opts.latentEps === 'config' ? eps : 1e-6;
  const T = ids.length;
  if (cfg.rope_interleave !== true) throw new Error('transcription: only rope_interleave true is transcribed');
  const freqs = invFreq(num('rope_theta'), Dr, (cfg.rope_scaling as Record<string, number | string> | null) ?? null);
  // cos/sin (T, Dr) = cat(freqs, freqs)·t
  const cos = new Float64Array(T * Dr);
  const sin = new Float64Array(T * Dr);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < Dr; i++) {
      const a = t * freqs[i % (Dr / 2)]!;
      cos[t * Dr + i] = Math.cos(a);
      sin[t * Dr + i] = Math.sin(a);
    }
  }
  /** apply_rotary_pos_emb_interleave on one Dr-vector at position t (returns the permuted, rotated vector). */
  const rope = (v: Float64Array, t: number): Float64Array => {
    const x = new Float64Array(Dr);
    for (let j = 0; j < Dr / 2; j++) {
      x[j] = v[2 * j]!;
      x[Dr / 2 + j] = v[2 * j + 1]!;
    }
    const out = new Float64Array(Dr);
    for (let i = 0; i < Dr; i++) {
      const rot = i < Dr / 2 ? -x[i + Dr / 2]! : x[i - Dr / 2]!;
      out[i] = x[i]! * cos[t * Dr + i]! + rot * sin[t * Dr + i]!;
    }
    return out;
  };
  const embed = get('model.embed_tokens.weight');
  let h = new Float64Array(T * C);
  ids.forEach((id, t) => h.set(embed.subarray(id * C, (id + 1) * C), t * C));
  const scaling = 1 / Math.sqrt(Dq);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    const x = rmsnorm(h, T, C, get(`${p}.input_layernorm.weight`), eps);
    const q = cfg.q_lora_rank === null || cfg.q_lora_rank === undefined
      ? linear(x, T, mat(`${p}.self_attn.q_proj.weight`))
      : linear(rmsnorm(linear(x, T, mat(`${p}.self_attn.q_a_proj.weight`)), T, num('q_lora_rank'), get(`${p}.self_attn.q_a_layernorm.weight`), latentEps), T, mat(`${p}.self_attn.q_b_proj.weight`));
    const ckv = linear(x, T, mat(`${p}.self_attn.kv_a_proj_with_mqa.weight`)); // (T, R+Dr)
    const comp = new Float64Array(T * R);
    for (let t = 0; t < T; t++) comp.set(ckv.subarray(t * (R + Dr), t * (R + Dr) + R), t * R);
    const kv = linear(rmsnorm(comp, T, R, get(`${p}.self_attn.kv_a_layernorm.weight`), latentEps), T, mat(`${p}.self_attn.kv_b_proj.weight`)); // (T, H(Dn+Dv))
    const kpe = Array.from({ length: T }, (_, t) => rope(ckv.subarray(t * (R + Dr) + R, (t + 1) * (R + Dr)), t));
    const attn = new Float64Array(T * H * Dv);
    for (let hh = 0; hh < H; hh++) {
      const qs = Array.from({ length: T }, (_, t) => {
        const row = q.subarray(t * H * Dq + hh * Dq, t * H * Dq + (hh + 1) * Dq);
        const out = new Float64Array(Dq);
        out.set(row.subarray(0, Dn), 0);
        out.set(rope(row.subarray(Dn, Dq), t), Dn);
        return out;
      });
      const kvRow = (t: number) => kv.subarray(t * H * (Dn + Dv) + hh * (Dn + Dv), t * H * (Dn + Dv) + (hh + 1) * (Dn + Dv));
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(t + 1);
        let mx = -Infinity;
        for (let u = 0; u <= t; u++) {
          let d = 0;
          const k = kvRow(u);
          for (let i = 0; i < Dn; i++) d += qs[t]![i]! * k[i]!;
          for (let i = 0; i < Dr; i++) d += qs[t]![Dn + i]! * kpe[u]![i]!;
          s[u] = d * scaling;
          mx = Math.max(mx, s[u]!);
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += (s[u] = Math.exp(s[u]! - mx));
        for (let u = 0; u <= t; u++) {
          const v = kvRow(u).subarray(Dn, Dn + Dv);
          for (let i = 0; i < Dv; i++) attn[t * H * Dv + hh * Dv + i]! += (s[u]! / z) * v[i]!;
        }
      }
    }
    const o = linear(attn, T, mat(`${p}.self_attn.o_proj.weight`));
    h = h.map((v, i) => v + o[i]!);
    const y = rmsnorm(h, T, C, get(`${p}.post_attention_layernorm.weight`), eps);
    const g = linear(y, T, mat(`${p}.mlp.gate_proj.weight`));
    const up = linear(y, T, mat(`${p}.mlp.up_proj.weight`));
    const act = g.map((v, i) => (v / (1 + Math.exp(-v))) * up[i]!);
    const d = linear(act, T, mat(`${p}.mlp.down_proj.weight`));
    h = h.map((v, i) => v + d[i]!);
  }
  const fin = rmsnorm(h, T, C, get('model.norm.weight'), eps);
  const head: Mat = tensors.has('lm_head.weight') ? mat('lm_head.weight') : { rows: V, cols: C, d: embed };
  if (!tensors.has('lm_head.weight') && cfg.tie_word_embeddings !== true) throw new Error('transcription: no lm_head.weight and embeddings not tied');
  return linear(fin, T, head);
}

// What the stock engines can express of an MLA model, and the exact rewrites that bring one into their layout:
//   - per-layer kv ranks: padded to the largest rank ({padRanks}), exactly, also under the latent RMSNorm;
//   - rope frequencies they cannot express: the nearest geometric run, its cost measured (mla-rope-fit.ts);
//   - rope pairing: reordered to adjacent pairs (export/stock.ts toAdjacentPairing);
//   - everything else a stock MLA layout cannot say (hybrid layers, no latent norm, biases, per-layer geometry) is
//     refused with the reason and what to do.
// Then what each engine does with the result (servingVerdicts). Stock DeepSeek-V3 and llama.cpp's deepseek2 hold
// MLA layers only, so this file selects them by kind; any other layer makes the model hybrid.
// Legend: C hidden, H heads, R kv rank, Dr rope dims, Dn nope dims, Dv value dims.

import { Tensor } from '../../tensor/tensor.js';
import type { MlaAttention, ModelConfig } from '../../model/config.js';
import { layerPrefix } from '../../model/weights.js';
import { stockRopeParams } from '../../io/deepseek.js';
import { TARGET_RULES, type Target } from '../../convert/targets.js';
import { UserError } from '../../errors.js';
import { toAdjacentPairing, type ExportTarget } from '../stock.js';
import { configLogitError, fitStockRope, ROPE_TOLERANCE } from './mla-rope-fit.js';

const f32 = (t: Tensor): Float32Array => t.toF32();

function need(weights: Map<string, Tensor>, name: string): Tensor {
  const t = weights.get(name);
  if (!t) throw new UserError(`export: tensor ${name}: missing`);
  return t;
}

/** The MLA layers (after assertStockMla: every layer, one geometry apart from the kv rank). */
function mlaLayers(cfg: ModelConfig): MlaAttention[] {
  return cfg.layers.filter((a): a is MlaAttention => a.kind === 'mla');
}

/**
 * Why this model cannot be written as a stock all-MLA model (empty when it can). Each message says why and what
 * to do. With padRanks, different per-layer kv ranks are fine (padded by padKvRanks).
 */
export function stockMlaProblems(cfg: ModelConfig, target: ExportTarget, padRanks: boolean, biasDropError?: number): string[] {
  const engine = target === 'gguf' ? "llama.cpp's deepseek2 architecture" : 'stock DeepSeek-V3 (transformers, vLLM, SGLang)';
  const problems: string[] = [];
  const other = cfg.layers.flatMap((a, i) => (a.kind !== 'mla' ? [i] : []));
  const mla = mlaLayers(cfg);
  if (mla.length === 0) {
    return [`the model has no MLA layer: convert it first (with {latentNorm})${target === 'gguf' ? ', or export an all-GQA model, which is written as llama' : ''}`];
  }
  if (other.length > 0) {
    problems.push(
      `hybrid model: layer(s) ${other.join(', ')} keep the original attention ({keepLayers}), but ${engine} has one attention kind for ` +
        'every layer; convert without {keepLayers}',
    );
  }
  const noNorm = cfg.layers.flatMap((a, i) => (a.kind === 'mla' && !a.latentNorm ? [i] : []));
  if (noNorm.length > 0) {
    problems.push(
      `no latent norm in layer(s) ${noNorm.join(', ')}: ${engine} always applies kv_a_layernorm (RMSNorm) to the latent, which changes ` +
        'the function; convert with {latentNorm} (and distil with it in place)',
    );
  }
  const biased = cfg.layers.flatMap((a, i) => (a.kind === 'mla' && a.bias ? [i] : []));
  if (biased.length > 0) {
    problems.push(
      `attention biases in layer(s) ${biased.join(', ')} (from the teacher's q/k/v bias): ${engine} has no bias on q_proj / ` +
        'kv_a_proj_with_mqa, and only part of them folds exactly (a key bias outside the rope part is a per-query constant under softmax; ' +
        "but the rope key bias rotates with the key's position, the q bias meets every key, and the value bias becomes a constant output " +
        `o_proj·b_v that the stock o_proj, without bias, cannot hold)${biasDropError === undefined ? '' : `; dropping them changes the logits by ${biasDropError.toExponential(2)} (relative)`}` +
        '; keep the native layout (mla convert output) for this model, or distil without biases',
    );
  }
  const first = mla[0]!;
  for (const [key, label] of [['ropeDim', 'rope dims'], ['nopeDim', 'nope dims'], ['vDim', 'value dims'], ['qRank', 'q rank']] as const) {
    const vals = [...new Set(mla.map((a) => a[key]))];
    if (vals.length > 1) problems.push(`per-layer ${label} (${vals.join(', ')}): ${engine} has one value for all layers; convert with one setting for every layer`);
  }
  const ranks = [...new Set(mla.map((a) => a.kvRank))];
  if (ranks.length > 1 && !padRanks) {
    problems.push(
      `per-layer kv ranks (${ranks.join(', ')}): ${engine} has one kv_lora_rank; add {padRanks} to pad every layer to ${Math.max(...ranks)} ` +
        '(exact: zero latent columns, with the latent norm rescaled), at the cost of a larger cache, or convert with one {plan.rank}',
    );
  }
  const freqKey = (a: MlaAttention): string => a.ropeInvFreq.map((f) => f.toPrecision(12)).join(',');
  if (new Set(mla.map(freqKey)).size > 1) {
    problems.push(
      `per-layer rope frequencies: ${engine} has one rope_theta for all layers; convert with the default rope rule (the ` +
        'same pairs in every layer, a geometric run), not the per-layer choice of the native target',
    );
  }
  if (target === 'gguf' && first.nopeDim === 0) {
    problems.push("qk_nope_head_dim is 0: llama.cpp's deepseek2 needs a no-rope part (attn_k_b would be empty); convert with a smaller {ropeDim}");
  }
  return problems;
}

/** Refuse with every problem at once. */
export function assertStockMla(cfg: ModelConfig, target: ExportTarget, padRanks: boolean, source: string, weights?: Map<string, Tensor>): void {
  const biased = cfg.layers.some((a) => a.kind === 'mla' && a.bias);
  const dropError =
    biased && weights && cfg.layers.every((a) => a.kind === 'mla')
      ? configLogitError(cfg, { ...cfg, layers: cfg.layers.map((a) => (a.kind === 'mla' ? { ...a, bias: false } : a)) }, weights, Math.min(cfg.maxPositions, 64))
      : undefined;
  const problems = stockMlaProblems(cfg, target, padRanks, dropError);
  if (problems.length > 0) {
    const what = target === 'gguf' ? 'GGUF (deepseek2)' : 'the stock DeepSeek-V3 layout';
    throw new UserError(`${source}: cannot export to ${what}:\n  - ${problems.join('\n  - ')}`);
  }
}

/**
 * Pad every MLA layer's kv rank to the largest (exact): kv_a_proj_with_mqa gains zero latent rows before the
 * rope rows, kv_b_proj zero columns. Under the latent RMSNorm the zero entries would lower the mean square, so
 * the latent rows are scaled by α = sqrt(Rmax/R) and the norm weight by 1/α: RMSNorm(α·c ⊕ 0)·(w/α ⊕ 0) =
 * RMSNorm(c)·w, including eps. Returns copies.
 */
export function padKvRanks(cfg: ModelConfig, weights: Map<string, Tensor>): { config: ModelConfig; weights: Map<string, Tensor>; padded: number[] } {
  const mla = mlaLayers(cfg);
  const Rmax = Math.max(0, ...mla.map((a) => a.kvRank));
  const w = new Map(weights);
  const padded: number[] = [];
  const C = cfg.hiddenSize;
  const H = cfg.numHeads;
  const layers = cfg.layers.map((a, i) => {
    if (a.kind !== 'mla' || a.kvRank === Rmax) return a;
    padded.push(i);
    const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
    const alpha = a.latentNorm ? Math.sqrt(Rmax / R) : 1;
    const p = `${layerPrefix(i)}.self_attn`;
    const kva = f32(need(w, `${p}.kv_a_proj_with_mqa.weight`)); // (R+Dr, C)
    const nk = new Float32Array((Rmax + Dr) * C);
    for (let r = 0; r < R * C; r++) nk[r] = kva[r]! * alpha;
    nk.set(kva.subarray(R * C), Rmax * C);
    w.set(`${p}.kv_a_proj_with_mqa.weight`, new Tensor([Rmax + Dr, C], nk));
    const bias = w.get(`${p}.kv_a_proj_with_mqa.bias`);
    if (bias) {
      const b = f32(bias);
      const nb = new Float32Array(Rmax + Dr);
      for (let r = 0; r < R; r++) nb[r] = b[r]! * alpha;
      nb.set(b.subarray(R), Rmax);
      w.set(`${p}.kv_a_proj_with_mqa.bias`, new Tensor([Rmax + Dr], nb));
    }
    if (a.latentNorm) {
      const g = f32(need(w, `${p}.kv_a_layernorm.weight`));
      const ng = new Float32Array(Rmax);
      for (let r = 0; r < R; r++) ng[r] = g[r]! / alpha;
      w.set(`${p}.kv_a_layernorm.weight`, new Tensor([Rmax], ng));
    }
    const kvb = f32(need(w, `${p}.kv_b_proj.weight`)); // (H(Dn+Dv), R)
    const rows = H * (Dn + Dv);
    const nb = new Float32Array(rows * Rmax);
    for (let r = 0; r < rows; r++) nb.set(kvb.subarray(r * R, (r + 1) * R), r * Rmax);
    w.set(`${p}.kv_b_proj.weight`, new Tensor([rows, Rmax], nb));
    return { ...a, kvRank: Rmax };
  });
  return { config: { ...cfg, layers }, weights: w, padded };
}

/**
 * Bring an all-MLA model into the stock layout: check it (refusing with reasons), fit its rope frequencies when the
 * engine cannot express them (mla-rope-fit.ts: measured, refused above ropeTolerance), pad ranks when asked, and reorder
 * rope rows to adjacent pairs. The result computes the same function apart from a rope fit's reported error.
 */
export function toStockMla(
  cfg: ModelConfig, weights: Map<string, Tensor>, target: ExportTarget, padRanks: boolean, source: string, ropeTolerance = ROPE_TOLERANCE,
): { config: ModelConfig; weights: Map<string, Tensor>; notes: string[] } {
  assertStockMla(cfg, target, padRanks, source, weights);
  const rope = fitStockRope(cfg, weights, target, ropeTolerance, source);
  const notes: string[] = [...rope.notes];
  let m = { config: rope.config, weights };
  if (padRanks) {
    const r = padKvRanks(cfg, weights);
    if (r.padded.length > 0) notes.push(`{padRanks}: layer(s) ${r.padded.join(', ')} padded to kv rank ${mlaLayers(r.config)[0]!.kvRank}`);
    m = r;
  }
  if (m.config.ropePairing === 'half') notes.push('rope rows of q and kv_a reordered from half-split to adjacent pairs (exact)');
  const out = toAdjacentPairing(m.config, m.weights);
  return { ...out, notes };
}

/**
 * What each engine does with an exported all-MLA model of this shape (the export prints these): the shape gates
 * of vLLM/SGLang and llama.cpp's CUDA flash attention, FlashMLA's 512+64, the rope_scaling rewrite of vLLM/SGLang.
 * Only the engines that read `format` are listed.
 */
export function servingVerdicts(cfg: ModelConfig, format: 'gguf' | 'hf'): string[] {
  const mla = cfg.layers.filter((a): a is MlaAttention => a.kind === 'mla');
  const a = mla[0];
  if (!a) return [];
  const R = Math.max(...mla.map((l) => l.kvRank));
  const Dr = a.ropeDim;
  const H = cfg.numHeads;
  const shape = `${R}+${Dr}`;
  const out: string[] = [];
  const fits = (t: Target): boolean => (TARGET_RULES[t].shapes ?? []).some((s) => s.kvRank === R && s.ropeDim === Dr && (!('minHeadsMultiple' in s) || H % s.minHeadsMultiple! === 0));
  if (format === 'gguf') {
    out.push(
      fits('llamacpp-cuda')
        ? `llama.cpp CUDA: ${shape} has a flash-attention MLA kernel`
        : `llama.cpp CUDA: no flash-attention MLA kernel for K/V ${R + Dr}/${R}${R === 256 && Dr === 64 ? ` (needs heads % 32 == 0, the model has ${H})` : ''}: runs on the slower non-FA path (CPU is unaffected)`,
    );
    return out;
  }
  out.push(
    fits('vllm')
      ? `vLLM/SGLang: head size ${R + Dr} accepted${R === 512 ? ' (FlashMLA / FA3-MLA on Hopper)' : ' (not FlashMLA, which needs 512+64)'}`
      : `vLLM/SGLang: refuse head size kv_lora_rank + qk_rope_head_dim = ${R + Dr} (their MLA backends accept 576 or 320): convert with --target vllm`,
  );
  const rope = stockRopeParams(cfg, a.ropeInvFreq);
  if (rope?.scaling) out.push(`vLLM/SGLang: rope_scaling ${String(rope.scaling.rope_type)} becomes deepseek_yarn there, which does not reproduce it`);
  return out;
}

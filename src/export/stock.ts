// What the stock engines can express, and the exact rewrites that bring a model into their layout:
//   - rope pairing: stock DeepSeek-V3 (rope_interleave) and llama.cpp (deepseek2, and llama's NORM rope) rotate
//     ADJACENT pairs (2j, 2j+1); HF Llama/Qwen rotate half-split pairs (j, j+d/2). Reordering the rows of the
//     q/k projections that feed a rope slice turns one into the other exactly (q·k is a sum over pairs);
//   - per-layer kv ranks: padded to the largest rank (--pad-ranks), exactly, also under the latent RMSNorm;
//   - everything else a stock MLA layout cannot say (hybrid layers, no latent norm, biases, per-layer rope) is
//     refused with the reason and what to do.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, R kv rank, Dr rope dims, Dn nope dims, Dv value dims.

import { Tensor } from '../tensor/tensor.js';
import type { GqaAttention, MlaAttention, ModelConfig } from '../model/config.js';
import { layerPrefix } from '../model/weights.js';
import { configLogitError, fitStockRope, ROPE_TOLERANCE } from './rope-fit.js';
import { UserError } from '../errors.js';

export type ExportTarget = 'gguf' | 'hf';

const f32 = (t: Tensor): Float32Array => t.toF32();

function need(weights: Map<string, Tensor>, name: string): Tensor {
  const t = weights.get(name);
  if (!t) throw new UserError(`export: tensor ${name}: missing`);
  return t;
}

/**
 * Rows [start, start+d) of each block, reordered from half-split pairs to adjacent pairs:
 * new row start+2j ← old start+j, new start+2j+1 ← old start+d/2+j. `data` is (rows, cols) row-major;
 * `starts` lists the first row of every rope slice (one per head). Returns a new array.
 */
export function halfToAdjacentRows(data: Float32Array, cols: number, starts: number[], d: number): Float32Array {
  const out = data.slice();
  const h = d / 2;
  for (const s of starts) {
    for (let j = 0; j < h; j++) {
      out.set(data.subarray((s + j) * cols, (s + j + 1) * cols), (s + 2 * j) * cols);
      out.set(data.subarray((s + h + j) * cols, (s + h + j + 1) * cols), (s + 2 * j + 1) * cols);
    }
  }
  return out;
}

/** Inverse of halfToAdjacentRows (tests and importers). */
export function adjacentToHalfRows(data: Float32Array, cols: number, starts: number[], d: number): Float32Array {
  const out = data.slice();
  const h = d / 2;
  for (const s of starts) {
    for (let j = 0; j < h; j++) {
      out.set(data.subarray((s + 2 * j) * cols, (s + 2 * j + 1) * cols), (s + j) * cols);
      out.set(data.subarray((s + 2 * j + 1) * cols, (s + 2 * j + 2) * cols), (s + h + j) * cols);
    }
  }
  return out;
}

const range = (n: number, f: (i: number) => number): number[] => Array.from({ length: n }, (_, i) => f(i));

/** Permute a tensor's rope rows (matrix (rows, cols) or bias (rows)) in place in the map. */
function permuteRows(weights: Map<string, Tensor>, name: string, starts: number[], d: number): void {
  const t = weights.get(name);
  if (!t) return;
  const cols = t.shape.length === 1 ? 1 : t.shape[1]!;
  weights.set(name, new Tensor(t.shape, halfToAdjacentRows(f32(t), cols, starts, d)));
}

/** The same model with adjacent-pair rope (a copy of the map; tensors that change are new). */
export function toAdjacentPairing(cfg: ModelConfig, weights: Map<string, Tensor>): { config: ModelConfig; weights: Map<string, Tensor> } {
  const w = new Map(weights);
  if (cfg.ropePairing === 'adjacent') return { config: cfg, weights: w };
  const H = cfg.numHeads;
  cfg.layers.forEach((a, i) => {
    const p = `${layerPrefix(i)}.self_attn`;
    if (a.kind === 'gqa') {
      const D = a.headDim;
      for (const s of ['weight', 'bias']) {
        permuteRows(w, `${p}.q_proj.${s}`, range(H, (h) => h * D), D);
        permuteRows(w, `${p}.k_proj.${s}`, range(a.numKvHeads, (h) => h * D), D);
      }
    } else {
      const { nopeDim: Dn, ropeDim: Dr, kvRank: R } = a;
      const qStarts = range(H, (h) => h * (Dn + Dr) + Dn);
      for (const s of ['weight', 'bias']) {
        permuteRows(w, `${p}.q_proj.${s}`, qStarts, Dr);
        permuteRows(w, `${p}.kv_a_proj_with_mqa.${s}`, [R], Dr);
      }
      permuteRows(w, `${p}.q_b_proj.weight`, qStarts, Dr);
    }
  });
  return { config: { ...cfg, ropePairing: 'adjacent' }, weights: w };
}

/** All layers MLA with one geometry apart from the kv rank (the caller checked). */
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
  const gqa = cfg.layers.flatMap((a, i) => (a.kind === 'gqa' ? [i] : []));
  const mla = mlaLayers(cfg);
  if (mla.length === 0) {
    return [`the model has no MLA layer: convert it first (with {latentNorm})${target === 'gguf' ? ', or export an all-GQA model, which is written as llama' : ''}`];
  }
  if (gqa.length > 0) {
    problems.push(
      `hybrid model: layer(s) ${gqa.join(', ')} keep the original attention ({keepLayers}), but ${engine} has one attention kind for ` +
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
 * engine cannot express them (rope-fit.ts: measured, refused above ropeTolerance), pad ranks when asked, and reorder
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

/** One GQA geometry for every layer (llama.cpp's llama architecture), or a reason. */
export function uniformGqa(cfg: ModelConfig): GqaAttention | string {
  const layers = cfg.layers.filter((a): a is GqaAttention => a.kind === 'gqa');
  if (layers.length !== cfg.layers.length) return 'hybrid model (GQA and MLA layers)';
  const first = layers[0];
  if (!first) return 'the model has no layers';
  const differ = layers.some((a) => a.numKvHeads !== first.numKvHeads || a.headDim !== first.headDim || a.qkvBias !== first.qkvBias);
  return differ ? 'per-layer attention geometry (kv heads, head dim or bias differ between layers)' : first;
}

// Calibration for activation-aware conversion: per-layer first and second moments of the attention input
// x = RMSNorm(h) (the vector every q/k/v projection reads), from teacher forward passes over calibration tokens.
// Every energy the converter needs is a quadratic form in these moments: E[(w·x+b)(w'·x+b')] = wᵀSw' + b(w'·μ) + b'(w·μ) + bb'.

import { noGrad } from '../autograd/var.js';
import { Tensor } from '../tensor/tensor.js';
import type { Var } from '../autograd/var.js';
import type { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { sampleSequences } from '../model/generate.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError } from '../errors.js';
import { readUtf8File } from '../io/text.js';
import { NonFiniteError } from '../model/finite.js';
import { firstNonFinite, nonFiniteName } from '../tensor/finite.js';
import { layerPrefix } from '../model/weights.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { tidy } from '../tensor/storage.js';
import { teacherAttention } from './kinds.js';

export interface LayerStats {
  /** Tokens seen. */
  n: number;
  /** (C) E[x]. */
  mean: Float64Array;
  /** (C, C) E[x xᵀ], row-major. */
  second: Float64Array;
  /** (H, Tmax) for GQA layers: the teacher's attention mass at each query−key distance Δ, per query head (rows sum
   *  to 1). The mean rotation E[R(−ωΔ)] of a rope pair under it is the best fixed stand-in for rotations dropped. */
  relDist?: Float64Array;
  maxDist?: number;
}

export interface CalibrationOptions {
  /** Text file; when absent, samples are drawn from the teacher itself. */
  file?: string;
  /** Number of sequences. */
  samples: number;
  /** Tokens per sequence. */
  length: number;
  seed: number;
}

/** Token sequences for calibration: windows of the calibration text, or the teacher's own samples from BOS. */
export function calibrationSequences(
  model: Model, tokenizer: Tokenizer | null, opts: CalibrationOptions, progress: ProgressSink = silentProgress,
): number[][] {
  const len = Math.min(opts.length, model.config.maxPositions);
  if (opts.file) {
    if (!tokenizer) throw new OptionError('calib.file', opts.file, 'the model has no tokenizer (give {tokenizer})');
    const text = readUtf8File(opts.file, `{calib.file} ${opts.file}`);
    const ids = tokenizer.encode(text, true);
    const seqs: number[][] = [];
    for (let s = 0; s + 2 <= ids.length && seqs.length < opts.samples; s += len) seqs.push(ids.slice(s, s + len));
    if (seqs.length === 0) throw new OptionError('calib.file', opts.file, 'fewer than 2 tokens of text');
    return seqs;
  }
  if (model.config.bosTokenId === null) throw new OptionError('calib.file', undefined, 'required: the model has no BOS token to sample calibration sequences from');
  return sampleSequences(model, opts.samples, len, opts.seed, 32, progress);
}

/** Per-layer moments of the attention inputs over the sequences. */
export function collectStats(model: Model, seqs: number[][], progress: ProgressSink = silentProgress): LayerStats[] {
  const { config: cfg, be, F } = model;
  const C = cfg.hiddenSize;
  const stats: LayerStats[] = cfg.layers.map(() => ({ n: 0, mean: new Float64Array(C), second: new Float64Array(C * C) }));
  const maxDist = Math.max(...seqs.map((q) => q.length));
  const H = cfg.numHeads;
  cfg.layers.forEach((a, l) => {
    if (teacherAttention(a)) {
      stats[l]!.relDist = new Float64Array(H * maxDist);
      stats[l]!.maxDist = maxDist;
    }
  });
  noGrad(() => {
    for (const seq of seqs) tidy(() => {
      const hidden: Var[] = [];
      forward(model, Int32Array.from(seq), 1, seq.length, { collectHidden: hidden });
      hidden.forEach((h, l) => {
        const xv = F.rmsnorm(h, model.p(`${layerPrefix(l)}.input_layernorm.weight`), cfg.rmsNormEps);
        const x = xv.value; // (T, C)
        const attn = cfg.layers[l]!;
        const t = teacherAttention(attn);
        if (t) accumulateDistances(model, l, t.numKvHeads, t.headDim, t.qkvBias, xv, stats[l]!.relDist!, maxDist);
        const xtx = be.run('matmul', [x, x], { transA: true, transB: false })[0]; // (C, C)
        const st = stats[l]!;
        for (let i = 0; i < C * C; i++) st.second[i]! += xtx.data[i]!;
        for (let t = 0; t < seq.length; t++) for (let c = 0; c < C; c++) st.mean[c]! += x.data[t * C + c]!;
        st.n += seq.length;
      });
      progress.tick(1);
    });
  });
  progress.end();
  for (const st of stats) {
    for (let i = 0; i < C * C; i++) st.second[i]! /= st.n;
    for (let c = 0; c < C; c++) st.mean[c]! /= st.n;
    if (st.relDist) for (let i = 0; i < st.relDist.length; i++) st.relDist[i]! /= st.n;
  }
  stats.forEach((st, l) => assertFiniteStats(st, l));
  return stats;
}

/** Non-finite moments would reach eigh/svd (and every energy): stop here, naming the layer and the statistic. */
function assertFiniteStats(st: LayerStats, l: number): void {
  const C = st.mean.length;
  const parts: [string, Float64Array | undefined, number][] = [
    ['mean E[x] of the attention input', st.mean, C], ['second moment E[x xᵀ] of the attention input', st.second, C],
    ["teacher's attention mass by query-key distance", st.relDist, st.maxDist ?? 1],
  ];
  for (const [what, a, cols] of parts) {
    if (!a) continue;
    const i = firstNonFinite(a);
    if (i < 0) continue;
    throw new NonFiniteError(
      `calibration: layer ${l}: the ${what} is ${nonFiniteName(a[i]!)} at (${Math.floor(i / cols)}, ${i % cols}); ` +
        `the teacher's forward pass over the calibration tokens overflowed float32 or met a non-finite weight`,
    );
  }
}

/** Add the teacher's causal attention mass at each distance Δ = t − s, per query head, for one sequence. */
function accumulateDistances(
  model: Model, l: number, Hkv: number, D: number, bias: boolean, x: Var, relDist: Float64Array, maxDist: number,
): void {
  const { config: cfg, F, be } = model;
  const H = cfg.numHeads;
  const T = x.shape[0]!;
  const p = `${layerPrefix(l)}.self_attn`;
  const pos = Int32Array.from({ length: T }, (_, t) => t);
  const inv = model.invFreq[l]!;
  const proj = (n: string, heads: number) =>
    F.rope(F.reshape(F.linear(x, model.p(`${p}.${n}.weight`), bias ? model.p(`${p}.${n}.bias`) : null), [1, T, heads, D]), pos, inv, cfg.ropePairing).value;
  const q = be.run('permute', [proj('q_proj', H).reshape([T, H, D])], { perm: [1, 0, 2] })[0]; // (H, T, D)
  const k = be.run('permute', [proj('k_proj', Hkv).reshape([T, Hkv, D])], { perm: [1, 0, 2] })[0]; // (Hkv, T, D)
  const scale = 1 / Math.sqrt(D);
  const row = new Float64Array(T);
  for (let h = 0; h < H; h++) {
    const g = Math.floor((h * Hkv) / H);
    const qh = q.data.subarray(h * T * D, (h + 1) * T * D);
    const kg = k.data.subarray(g * T * D, (g + 1) * T * D);
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += qh[t * D + i]! * kg[s * D + i]!;
        row[s] = d * scale;
        if (row[s]! > max) max = row[s]!;
      }
      let z = 0;
      for (let s = 0; s <= t; s++) z += row[s] = Math.exp(row[s]! - max);
      for (let s = 0; s <= t; s++) relDist[h * maxDist + (t - s)]! += row[s]! / z;
    }
  }
}

/** Identity moments: energies become plain weight norms (data-free conversion). */
export function identityStats(C: number): LayerStats {
  const second = new Float64Array(C * C);
  for (let i = 0; i < C; i++) second[i * C + i] = 1;
  return { n: 0, mean: new Float64Array(C), second };
}

/** E[(W x + b)(W' x + b')ᵀ] for row-major W (m, C), W' (m', C): (m, m'). Uses the backend for the big products. */
export function crossMoment(
  model: Model, st: LayerStats, W: Float64Array, b: Float64Array | null, m: number,
  W2: Float64Array, b2: Float64Array | null, m2: number,
): Float64Array {
  const C = st.mean.length;
  const be = model.be;
  const t = (d: Float64Array, r: number) => new Tensor([r, C], Float32Array.from(d)).to(be.dtype);
  const S = new Tensor([C, C], Float32Array.from(st.second)).to(be.dtype);
  const WS = be.run('matmul', [t(W, m), S], { transA: false, transB: false })[0];
  const G = be.run('matmul', [WS, t(W2, m2)], { transA: false, transB: true })[0];
  const out = Float64Array.from(G.data);
  if (b || b2) {
    const wmu = matVec(W, m, C, st.mean);
    const w2mu = matVec(W2, m2, C, st.mean);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m2; j++) {
        const bi = b ? b[i]! : 0;
        const bj = b2 ? b2[j]! : 0;
        out[i * m2 + j]! += bi * w2mu[j]! + bj * wmu[i]! + bi * bj;
      }
    }
  }
  return out;
}

function matVec(W: Float64Array, m: number, C: number, v: Float64Array): Float64Array {
  const out = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += W[i * C + c]! * v[c]!;
    out[i] = s;
  }
  return out;
}

// Calibration for activation-aware conversion: per-layer first and second moments of the attention input
// x = RMSNorm(h) (the vector every q/k/v projection reads), from teacher forward passes over calibration tokens.
// Every energy the converter needs is a quadratic form in these moments: E[(w·x+b)(w'·x+b')] = wᵀSw' + b(w'·μ) + b'(w·μ) + bb'.

import { noGrad } from '../autograd/var.js';
import { Tensor } from '../tensor/tensor.js';
import type { Var } from '../autograd/var.js';
import type { Model } from '../model/model.js';
import type { Backend } from '../tensor/backend.js';
import { forward } from '../model/forward.js';
import { sampleSequences, sampleToken } from '../model/generate.js';
import { KVCache } from '../model/cache.js';
import { FORWARD_HINT, assertFiniteRows } from '../model/finite.js';
import { mulberry32 } from '../tensor/rng.js';
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

/** Calibration forward steps run at once: the teacher samples this many sequences side by side (one decode batch). */
export const CALIB_SAMPLE_BATCH = 32;
/** Rows of calibration text per prefill batch (B·T), so a batch's activations stay a few tens of MB. */
const CALIB_PREFILL_ROWS = 2048;

/** Token sequences for calibration: windows of the calibration text, or the teacher's own samples from BOS. */
export function calibrationSequences(
  model: Model, tokenizer: Tokenizer | null, opts: CalibrationOptions, progress: ProgressSink = silentProgress,
): number[][] {
  const len = Math.min(opts.length, model.config.maxPositions);
  if (opts.file) return textSequences(tokenizer, opts, len);
  if (model.config.bosTokenId === null) throw new OptionError('calib.file', undefined, 'required: the model has no BOS token to sample calibration sequences from');
  return sampleSequences(model, opts.samples, len, opts.seed, CALIB_SAMPLE_BATCH, progress);
}

function textSequences(tokenizer: Tokenizer | null, opts: CalibrationOptions, len: number): number[][] {
  if (!tokenizer) throw new OptionError('calib.file', opts.file, 'the model has no tokenizer (give {tokenizer})');
  const text = readUtf8File(opts.file!, `{calib.file} ${opts.file}`);
  const ids = tokenizer.encode(text, true);
  const seqs: number[][] = [];
  for (let s = 0; s + 2 <= ids.length && seqs.length < opts.samples; s += len) seqs.push(ids.slice(s, s + len));
  if (seqs.length === 0) throw new OptionError('calib.file', opts.file, 'fewer than 2 tokens of text');
  return seqs;
}

/** What calibrate() reports progress in: forward steps of the sampling batches (teacher samples), or sequences of the
 *  calibration text; `total` is known before any work (the CLI's bar, and its ETA from the first step). */
export function calibrationProgress(maxPositions: number, opts: CalibrationOptions): { total: number; unit: string } {
  if (opts.file) return { total: opts.samples, unit: 'seq' };
  const len = Math.min(opts.length, maxPositions);
  return { total: Math.ceil(opts.samples / CALIB_SAMPLE_BATCH) * len, unit: 'step' };
}

/**
 * Per-layer calibration statistics in one pass. Teacher samples: the sampling decode itself feeds the statistics
 * (each step's attention inputs are the rows a prefill of the finished samples would see, and the attention distances
 * of the new query over the keys so far), plus one hidden-only step for each sample's last token — no second forward
 * over the samples, no logits for it. The samples are those of sampleSequences (same seed, same batches). Calibration
 * text: prefill batches of equal-length windows, hidden-only. Progress: one tick per step (see calibrationProgress).
 */
export function calibrate(
  model: Model, tokenizer: Tokenizer | null, opts: CalibrationOptions, progress: ProgressSink = silentProgress,
): LayerStats[] {
  const len = Math.min(opts.length, model.config.maxPositions);
  if (opts.file) {
    const seqs = textSequences(tokenizer, opts, len);
    return collectStats(model, seqs, progress);
  }
  const cfg = model.config;
  const bos = cfg.bosTokenId;
  if (bos === null) throw new OptionError('calib.file', undefined, 'required: the model has no BOS token to sample calibration sequences from');
  const V = cfg.vocabSize;
  const acc = new StatsAccumulator(model, len, true);
  noGrad(() => {
    for (let start = 0; start < opts.samples; start += CALIB_SAMPLE_BATCH) tidy(() => {
      const B = Math.min(CALIB_SAMPLE_BATCH, opts.samples - start);
      // The rng and the sampling rule of sampleSequences: the same seed gives the same calibration samples.
      const rng = mulberry32(opts.seed * 7919 + start);
      const cache = new KVCache(model, B, len);
      acc.beginBatch(B);
      let ids = new Int32Array(B).fill(bos);
      for (let t = 0; t < len; t++) {
        const last = t === len - 1;
        ids = tidy(() => {
          const out = forward(model, ids, B, 1, { cache, hiddenOnly: last, onAttentionInput: (l, x, P) => acc.add(l, x, B, 1, P) }).value;
          if (last) return ids;
          assertFiniteRows('sampling', 'logits from the sampled model', out.data, 1, V, FORWARD_HINT, (b) => `sample ${start + b + 1}, position ${t}`);
          return Int32Array.from({ length: B }, (_, b) => sampleToken(out.data.subarray(b * V, (b + 1) * V), 1, 1, rng));
        });
        progress.tick(1);
      }
    });
  });
  progress.end();
  return acc.finish();
}

/** Per-layer moments of the attention inputs over the sequences (hidden-only prefill batches of equal-length
 *  sequences; progress in sequences). */
export function collectStats(model: Model, seqs: number[][], progress: ProgressSink = silentProgress): LayerStats[] {
  const maxDist = Math.max(...seqs.map((q) => q.length));
  const acc = new StatsAccumulator(model, maxDist, false);
  const byLength = new Map<number, number[][]>();
  for (const q of seqs) byLength.set(q.length, [...(byLength.get(q.length) ?? []), q]);
  noGrad(() => {
    for (const [T, group] of byLength) {
      const per = Math.max(1, Math.floor(CALIB_PREFILL_ROWS / T));
      for (let i = 0; i < group.length; i += per) tidy(() => {
        const batch = group.slice(i, i + per);
        const B = batch.length;
        acc.beginBatch(B);
        forward(model, Int32Array.from(batch.flat()), B, T, { hiddenOnly: true, onAttentionInput: (l, x, P) => acc.add(l, x, B, T, P) });
        progress.tick(B);
      });
    }
  });
  progress.end();
  return acc.finish();
}

/** Rows of attention input buffered per layer before one XᵀX product (a GEMM, not many thin ones). */
const FLUSH_ROWS = 1024;

/**
 * Running sums for LayerStats from attention inputs x (B·T, C) at positions P..P+T−1: Σx and Σxxᵀ in float64 (XᵀX
 * products in f32 on the backend over ≥ FLUSH_ROWS rows at a time) and, for GQA layers, the teacher's attention mass
 * by distance (op attentionDistance) of these queries over all keys so far. Decode batches (T = 1 per call) keep the
 * layer's post-RoPE keys of the batch (B, Tmax, Hkv, D) so each new query sees its prefix; prefill batches (P = 0)
 * hold the whole sequences in one call and need no key store.
 */
class StatsAccumulator {
  private readonly C: number;
  private readonly sum: Float64Array[];
  private readonly second: Float64Array[];
  private readonly relDist: (Float64Array | null)[];
  private readonly rows: Float32Array[];
  private readonly filled: number[];
  private readonly n: number[];
  private keys: (Float32Array | null)[] = [];

  constructor(private readonly model: Model, private readonly maxDist: number, private readonly decode: boolean) {
    const cfg = model.config;
    this.C = cfg.hiddenSize;
    const L = cfg.numLayers;
    this.sum = Array.from({ length: L }, () => new Float64Array(this.C));
    this.second = Array.from({ length: L }, () => new Float64Array(this.C * this.C));
    this.relDist = cfg.layers.map((a) => (teacherAttention(a) ? new Float64Array(cfg.numHeads * maxDist) : null));
    this.rows = Array.from({ length: L }, () => new Float32Array(decode ? FLUSH_ROWS * this.C : 0));
    this.filled = new Array<number>(L).fill(0);
    this.n = new Array<number>(L).fill(0);
  }

  /** A new batch of B sequences starts at position 0. */
  beginBatch(B: number): void {
    const cfg = this.model.config;
    if (this.decode) {
      this.keys = cfg.layers.map((a) => {
        const t = teacherAttention(a);
        return t ? new Float32Array(B * this.maxDist * t.numKvHeads * t.headDim) : null;
      });
    }
  }

  /** x (B·T, C): layer l's attention inputs at positions P..P+T−1 of the current batch. */
  add(l: number, xv: Var, B: number, T: number, P: number): void {
    const C = this.C;
    const x = xv.value;
    if (this.decode) {
      const data = x.data;
      let off = 0;
      while (off < B * T) {
        const take = Math.min(B * T - off, FLUSH_ROWS - this.filled[l]!);
        this.rows[l]!.set(data.subarray(off * C, (off + take) * C), this.filled[l]! * C);
        this.filled[l]! += take;
        off += take;
        if (this.filled[l] === FLUSH_ROWS) this.flush(l);
      }
    } else {
      this.accumulate(l, x, B * T);
    }
    const t = teacherAttention(this.model.config.layers[l]!);
    if (t) this.distances(l, t.numKvHeads, t.headDim, t.qkvBias, xv, B, T, P);
  }

  private flush(l: number): void {
    const m = this.filled[l]!;
    if (m === 0) return;
    tidy(() => this.accumulate(l, new Tensor([m, this.C], this.rows[l]!.subarray(0, m * this.C)).to(this.model.be.dtype), m));
    this.filled[l] = 0;
  }

  /** Σx and Σxxᵀ over the m rows of x (m, C). */
  private accumulate(l: number, x: Tensor, m: number): void {
    const C = this.C;
    const xtx = this.model.be.run('matmul', [x, x], { transA: true, transB: false })[0].data; // (C, C)
    const second = this.second[l]!;
    for (let i = 0; i < C * C; i++) second[i]! += xtx[i]!;
    const xs = x.data;
    const sum = this.sum[l]!;
    for (let r = 0; r < m; r++) for (let c = 0; c < C; c++) sum[c]! += xs[r * C + c]!;
    this.n[l]! += m;
  }

  /** Attention mass by distance of these queries over the keys so far (RoPE at their positions, as the teacher). */
  private distances(l: number, Hkv: number, D: number, bias: boolean, x: Var, B: number, T: number, P: number): void {
    const { config: cfg, F, be } = this.model;
    const H = cfg.numHeads;
    const p = `${layerPrefix(l)}.self_attn`;
    const pos = Int32Array.from({ length: T }, (_, t) => P + t);
    const inv = this.model.invFreq[l]!;
    const proj = (n: string, heads: number): Tensor =>
      F.rope(F.reshape(F.linear(x, this.model.p(`${p}.${n}.weight`), bias ? this.model.p(`${p}.${n}.bias`) : null), [B, T, heads, D]), pos, inv, cfg.ropePairing).value;
    const q = proj('q_proj', H); // (B, T, H, D)
    let k = proj('k_proj', Hkv); // (B, T, Hkv, D)
    let S = T;
    if (this.decode) {
      // Append the new keys to the batch's key store (B, Tmax, Hkv, D) at P..P+T−1.
      const store = this.keys[l]!;
      const row = Hkv * D;
      const kd = k.data;
      for (let b = 0; b < B; b++) store.set(kd.subarray(b * T * row, (b + 1) * T * row), (b * this.maxDist + P) * row);
      S = this.maxDist;
      k = new Tensor([B, S, Hkv, D], store).to(be.dtype);
    }
    const dist = be.run('attentionDistance', [q, k], { scale: 1 / Math.sqrt(D), qOffset: P })[0].data; // (H, S)
    const rel = this.relDist[l]!;
    const M = this.maxDist;
    for (let h = 0; h < H; h++) for (let d = 0; d < Math.min(S, M); d++) rel[h * M + d]! += dist[h * S + d]!;
  }

  /** The moments divided by the token count, checked finite. */
  finish(): LayerStats[] {
    const C = this.C;
    return this.sum.map((sum, l) => {
      this.flush(l);
      const n = this.n[l]!;
      const second = this.second[l]!;
      for (let i = 0; i < C * C; i++) second[i]! /= n;
      for (let c = 0; c < C; c++) sum[c]! /= n;
      const rel = this.relDist[l];
      if (rel) for (let i = 0; i < rel.length; i++) rel[i]! /= n;
      const st: LayerStats = { n, mean: sum, second, ...(rel ? { relDist: rel, maxDist: this.maxDist } : {}) };
      assertFiniteStats(st, l);
      return st;
    });
  }
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
  const WS = matmulF64(model.be, W, m, C, st.second, C, C, false, false);
  const out = matmulF64(model.be, WS, m, C, W2, m2, C, false, true);
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

/** The diagonal of crossMoment(W, b, W, b): E[(wᵢ·x + bᵢ)²] per row, without the (m, m) product. */
export function secondMomentDiag(model: Model, st: LayerStats, W: Float64Array, b: Float64Array | null, m: number): Float64Array {
  const C = st.mean.length;
  const WS = matmulF64(model.be, W, m, C, st.second, C, C, false, false);
  const wmu = b ? matVec(W, m, C, st.mean) : null;
  const out = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += WS[i * C + c]! * W[i * C + c]!;
    out[i] = b ? s + 2 * b[i]! * wmu![i]! + b[i]! * b[i]! : s;
  }
  return out;
}

/** op(A)·op(B) on a backend (its dtype: f32 on cpu, f64 on ref) for float64 operands, as float64.
 *  A is (ra, ca) and B (rb, cb) as stored; transA/transB as in the matmul op. */
export function matmulF64(
  be: Backend, A: Float64Array, ra: number, ca: number, B: Float64Array, rb: number, cb: number, transA: boolean, transB: boolean,
): Float64Array {
  const t = (d: Float64Array, r: number, c: number) => new Tensor([r, c], Float32Array.from(d)).to(be.dtype);
  return tidy(() => Float64Array.from(be.run('matmul', [t(A, ra, ca), t(B, rb, cb)], { transA, transB })[0]!.data));
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

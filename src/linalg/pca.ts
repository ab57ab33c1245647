// PCA helpers for the converter: second-moment (covariance) matrices of calibration activations accumulated in
// float64, their leading eigenvectors as a latent basis, and the rank choice from a singular-value spectrum
// (the smallest rank keeping a fraction δ of the energy, rounded up to a hardware-friendly multiple).
//
// Shape legend: N rows (tokens) of activations, C columns (features), k kept directions.

import type { LinalgProvider } from '../tensor/backend.js';
import { NonFiniteInputError } from '../tensor/finite.js';

// Rows per block in the Gram accumulation: the block is transposed once so every dot product is contiguous, and the
// (C, C) accumulator is swept once per block rather than once per row.
const GRAM_BLOCK = 64;

/**
 * Streaming Gram matrix G = Σ_batches XᵀX over row-major (N, C) batches, accumulated in float64 whatever the input
 * precision, so a calibration set larger than memory can be fed batch by batch. `covariance()` returns G / N_total.
 */
export class GramAccumulator {
  readonly cols: number;
  /** Rows added so far. */
  rows = 0;
  /** (C, C) row-major; only the upper triangle (j ≥ i) is accumulated until `covariance()` mirrors it. */
  private readonly gram: Float64Array;
  /** (C, GRAM_BLOCK) scratch: a block of rows, transposed. */
  private readonly block: Float64Array;

  constructor(cols: number) {
    if (!Number.isInteger(cols) || cols < 1) throw new Error(`GramAccumulator: cols ${cols} must be a positive integer`);
    this.cols = cols;
    this.gram = new Float64Array(cols * cols);
    this.block = new Float64Array(cols * GRAM_BLOCK);
  }

  /** G += XᵀX for a row-major (rows, C) batch. Throws on a size mismatch or a non-finite entry. */
  add(x: Float64Array | Float32Array, rows: number): void {
    const C = this.cols;
    if (!Number.isInteger(rows) || rows < 0) {
      throw new Error(`GramAccumulator.add: rows ${rows} must be a non-negative integer`);
    }
    if (x.length !== rows * C) {
      throw new Error(`GramAccumulator.add: (${rows}, ${C}) needs ${rows * C} values, got ${x.length}`);
    }
    const g = this.gram;
    const bt = this.block;
    for (let r0 = 0; r0 < rows; r0 += GRAM_BLOCK) {
      const nb = Math.min(GRAM_BLOCK, rows - r0);
      // bt[c·B + r] = x[r0 + r, c]
      for (let r = 0; r < nb; r++) {
        const row = (r0 + r) * C;
        for (let c = 0; c < C; c++) {
          const v = x[row + c]!;
          if (!Number.isFinite(v)) {
            throw new NonFiniteInputError(`GramAccumulator.add: entry (row ${r0 + r}, column ${c}) is ${v}; input must be finite`);
          }
          bt[c * GRAM_BLOCK + r] = v;
        }
      }
      for (let i = 0; i < C; i++) {
        const bi = i * GRAM_BLOCK;
        const gi = i * C;
        for (let j = i; j < C; j++) {
          const bj = j * GRAM_BLOCK;
          let acc = 0;
          for (let r = 0; r < nb; r++) acc += bt[bi + r]! * bt[bj + r]!;
          g[gi + j] = g[gi + j]! + acc;
        }
      }
    }
    this.rows += rows;
  }

  /** The (C, C) symmetric matrix G / N = (1/N)·Σ_n x_n x_nᵀ over every row added (a new array). Throws if N = 0. */
  covariance(): Float64Array {
    const C = this.cols;
    if (this.rows === 0) throw new Error('GramAccumulator.covariance: no rows were added');
    const inv = 1 / this.rows;
    const out = new Float64Array(C * C);
    for (let i = 0; i < C; i++) {
      for (let j = i; j < C; j++) {
        const v = this.gram[i * C + j]! * inv;
        out[i * C + j] = v;
        out[j * C + i] = v;
      }
    }
    return out;
  }
}

/**
 * Uncentred covariance (second-moment matrix) Σ = XᵀX / N of a row-major (N, C) matrix, accumulated in float64:
 * Σ_ij = (1/N)·Σ_n x_ni·x_nj, shape (C, C), exactly symmetric. Uncentred on purpose: the converter projects the
 * activations themselves (no mean is subtracted at inference), so the subspace that keeps E‖x‖² is the one wanted.
 */
export function covariance(x: Float64Array | Float32Array, rows: number, cols: number): Float64Array {
  const acc = new GramAccumulator(cols);
  acc.add(x, rows);
  return acc.covariance();
}

/** Leading eigenpairs of a symmetric matrix. */
export interface TopEigen {
  /** (k) the k largest eigenvalues, descending. */
  values: Float64Array;
  /** (n, k) row-major; column j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
  n: number;
  k: number;
}

/**
 * The k leading eigenpairs of a symmetric row-major (n, n) matrix (e.g. a covariance): values (k) descending and
 * vectors (n, k) with orthonormal columns, column j ↔ values[j]. Projecting onto the span, z = Pᵀx with P the
 * vectors, keeps Σ_{j<k} λ_j of the second moment E‖x‖² = Σ λ_j.
 * Each column's sign is fixed so its entry of largest magnitude (first such on ties) is positive, making the basis
 * the same whichever provider computed it (up to the rotation freedom inside a repeated eigenvalue).
 */
export function topEigvecs(cov: Float64Array, n: number, k: number, linalg: LinalgProvider): TopEigen {
  if (!Number.isInteger(k) || k < 0 || k > n) throw new Error(`topEigvecs: k ${k} must be an integer in [0, ${n}]`);
  const eig = linalg.eigh(cov, n);
  const values = eig.values.slice(0, k);
  const vectors = new Float64Array(n * k);
  for (let j = 0; j < k; j++) {
    let big = 0;
    let sign = 1;
    for (let r = 0; r < n; r++) {
      const v = eig.vectors[r * n + j]!;
      if (Math.abs(v) > big) {
        big = Math.abs(v);
        sign = v < 0 ? -1 : 1;
      }
    }
    for (let r = 0; r < n; r++) vectors[r * k + j] = sign * eig.vectors[r * n + j]!;
  }
  return { values, vectors, n, k };
}

/**
 * The smallest rank r such that the first r singular values keep a fraction δ of the energy:
 * min { r : Σ_{j<r} σ_j² ≥ δ·Σ_j σ_j² }, with s in descending order (as svd returns it) and 0 < δ ≤ 1.
 * δ = 1 gives the numerical rank counting every non-zero σ. Returns 0 for an all-zero spectrum.
 * For eigenvalues of a covariance (λ = σ²/N) pass their square roots.
 */
export function energyRank(s: Float64Array, delta: number): number {
  if (!(delta > 0 && delta <= 1)) throw new Error(`energyRank: delta ${delta} must be in (0, 1]`);
  let total = 0;
  for (let j = 0; j < s.length; j++) {
    const v = s[j]!;
    if (!Number.isFinite(v)) throw new Error(`energyRank: s[${j}] is ${v}; singular values must be finite`);
    total += v * v;
  }
  if (total === 0) return 0;
  const target = delta * total;
  // Same summation order as total, so with δ = 1 the last prefix equals total exactly and the loop always returns.
  let cum = 0;
  for (let j = 0; j < s.length; j++) {
    const v = s[j]!;
    cum += v * v;
    if (cum >= target) return j + 1;
  }
  return s.length;
}

/** The smallest multiple of `multiple` that is ≥ r: ⌈r / multiple⌉·multiple (r ≥ 0, multiple ≥ 1, integers). */
export function roundUp(r: number, multiple: number): number {
  if (!Number.isInteger(r) || r < 0) throw new Error(`roundUp: r ${r} must be a non-negative integer`);
  if (!Number.isInteger(multiple) || multiple < 1) {
    throw new Error(`roundUp: multiple ${multiple} must be a positive integer`);
  }
  return Math.ceil(r / multiple) * multiple;
}

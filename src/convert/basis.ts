// The latent basis for the no-rope keys and the values of one layer: [K_nope; V] (2·Hkv·D rows) ≈ B·A with
// A (R, C) the latent down-projection (kv_a's latent rows) and B (2·Hkv·D, R) the up-projection (kv_b, per kv head).
//   weight      X-EcoMLA: joint SVD of the weights [K_nope; V] (the GQA expansion to H heads only scales rows of a
//               group equally, so the unexpanded matrix has the same singular vectors).
//   activation  TransMLA's BKV-PCA: PCA of the calibration activations [K_nope/α; V], α = ‖K‖/‖V‖ balancing the two so
//               the keys do not crowd the values out of the basis (ours: the RMS ratio over all columns; the
//               transmla recipe: TransMLA's mean column-norm ratio and 1 % damping, given in BasisInput.balance).
// Legend: C hidden, Hkv kv heads, D head dim, KD = Hkv·D, R kv rank.

import type { LinalgProvider } from '../tensor/backend.js';
import type { Model } from '../model/model.js';
import { crossMoment, matmulF64, secondMomentDiag, type LayerStats } from './calibrate.js';

export type BasisMethod = 'weight' | 'activation';
export const BASIS_METHODS: readonly BasisMethod[] = ['weight', 'activation'];

export interface LatentFactors {
  A: Float64Array; // (R, C)
  a: Float64Array | null; // (R) latent bias
  Bk: Float64Array; // (KD, R)
  Bv: Float64Array; // (KD, R)
}

export interface Factorization {
  /** Energy of each basis direction, descending (σ² or eigenvalues). */
  spectrum: Float64Array;
  /** Largest usable rank. */
  maxRank: number;
  /** The rank-R factors. */
  build(R: number): LatentFactors;
}

/** Fraction of the spectrum's energy in its first R directions. */
export function energyKept(spectrum: Float64Array, R: number): number {
  let kept = 0;
  let total = 0;
  spectrum.forEach((e, i) => {
    total += Math.max(e, 0);
    if (i < R) kept += Math.max(e, 0);
  });
  return total > 0 ? kept / total : 1;
}

export interface BasisInput {
  /** The teacher model (its backend computes the calibration moments); null for the weight basis without calibration. */
  model: Model | null;
  Kn: Float64Array; // (KD, C)
  V: Float64Array; // (KD, C)
  bk: Float64Array | null; // (KD)
  bv: Float64Array | null; // (KD)
  KD: number;
  C: number;
  stats: LayerStats;
  linalg: LinalgProvider;
  /** Activation basis: a given balance α (TransMLA's, freqfold.ts transmlaBalance) and damping δ (the moment gets
   *  δ·mean(diag) on its diagonal, as TransMLA's pca_calc; the eigenvectors do not change, the spectrum shifts);
   *  absent: α = sqrt(E‖K_nope‖² / E‖V‖²), no damping. */
  balance?: { alpha: number; damping: number; /** key dims the rope key took (TransMLA's PCA has that many fewer columns) */ ropeDims: number };
}

export function factorize(method: BasisMethod, inp: BasisInput): Factorization {
  return method === 'weight' ? weightFactorization(inp) : activationFactorization(inp);
}

function stackBias(bk: Float64Array | null, bv: Float64Array | null, KD: number, alpha = 1): Float64Array | null {
  if (!bk && !bv) return null;
  const b = new Float64Array(2 * KD);
  for (let i = 0; i < KD; i++) {
    b[i] = (bk ? bk[i]! : 0) / alpha;
    b[KD + i] = bv ? bv[i]! : 0;
  }
  return b;
}

function weightFactorization(inp: BasisInput): Factorization {
  const { Kn, V, KD, C } = inp;
  const M = new Float64Array(2 * KD * C);
  M.set(Kn, 0);
  M.set(V, KD * C);
  const { u, s, vt, k } = inp.linalg.svd(M, 2 * KD, C);
  const bias = stackBias(inp.bk, inp.bv, KD);
  return {
    spectrum: s.map((x) => x * x),
    maxRank: k,
    build(R) {
      const A = new Float64Array(R * C);
      for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) A[r * C + c] = s[r]! * vt[r * C + c]!;
      const { Bk, Bv } = splitUp((i, r) => u[i * k + r]!, KD, R);
      return { A, a: bias ? project(bias, (i, r) => u[i * k + r]!, 2 * KD, R) : null, Bk, Bv };
    },
  };
}

function activationFactorization(inp: BasisInput): Factorization {
  const { Kn, V, KD, C, stats } = inp;
  const model = inp.model;
  if (!model) throw new Error('activation basis: needs the calibrated teacher model');
  const energy = (W: Float64Array, b: Float64Array | null) => {
    let t = 0;
    for (const e of secondMomentDiag(model, stats, W, b, KD)) t += e;
    return t;
  };
  let alpha = inp.balance?.alpha ?? 1;
  if (!inp.balance) {
    const eK = energy(Kn, inp.bk);
    const eV = energy(V, inp.bv);
    // A key part that is numerically zero (every rope component kept) must not be blown up by the balancing.
    alpha = eK > 1e-10 * eV && eV > 0 ? Math.sqrt(eK / eV) : 1;
  }
  const Wz = new Float64Array(2 * KD * C);
  for (let i = 0; i < KD * C; i++) Wz[i] = Kn[i]! / alpha;
  Wz.set(V, KD * C);
  const bz = stackBias(inp.bk, inp.bv, KD, alpha);
  const n = 2 * KD;
  const Cz = crossMoment(model, stats, Wz, bz, n, Wz, bz, n);
  if (inp.balance && inp.balance.damping > 0) {
    let tr = 0;
    for (let i = 0; i < n; i++) tr += Cz[i * n + i]!;
    const damp = (inp.balance.damping * tr) / (n - inp.balance.ropeDims);
    for (let i = 0; i < n; i++) Cz[i * n + i]! += damp;
  }
  const { values, vectors } = inp.linalg.eigh(Cz, n);
  return {
    spectrum: values.map((x) => Math.max(x, 0)),
    maxRank: n,
    build(R) {
      const e = (i: number, r: number) => vectors[i * n + r]!;
      // A = E_Rᵀ Wz: (R, n)·(n, C), on the backend (at 1B, 224 × 1024 × 2048 per layer).
      const A = leadingColumnsTimes(model, vectors, n, R, Wz, C);
      const { Bk, Bv } = splitUp(e, KD, R, alpha);
      return { A, a: bz ? project(bz, e, n, R) : null, Bk, Bv };
    },
  };
}

/** E[:, :R]ᵀ W for row-major E (n, n) and W (n, C): (R, C). */
function leadingColumnsTimes(model: Model, E: Float64Array, n: number, R: number, W: Float64Array, C: number): Float64Array {
  const Er = new Float64Array(n * R);
  for (let i = 0; i < n; i++) Er.set(E.subarray(i * n, i * n + R), i * R);
  return matmulF64(model.be, Er, n, R, W, n, C, true, false);
}

/** Up-projection rows from an orthonormal basis e(i, r) (i < 2·KD): key rows scaled back by α. */
function splitUp(e: (i: number, r: number) => number, KD: number, R: number, alpha = 1): { Bk: Float64Array; Bv: Float64Array } {
  const Bk = new Float64Array(KD * R);
  const Bv = new Float64Array(KD * R);
  for (let i = 0; i < KD; i++) {
    for (let r = 0; r < R; r++) {
      Bk[i * R + r] = alpha * e(i, r);
      Bv[i * R + r] = e(KD + i, r);
    }
  }
  return { Bk, Bv };
}

/** Eᵣᵀ b for an orthonormal basis. */
function project(b: Float64Array, e: (i: number, r: number) => number, n: number, R: number): Float64Array {
  const out = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += e(i, r) * b[i]!;
    out[r] = s;
  }
  return out;
}

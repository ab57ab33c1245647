// TransMLA's FreqFold and its K/V balancing (fxmeng/TransMLA@9c0d2545 transmla/partial_rope.py, lora_qkv.py), for
// `--freqfold F` and `--recipe transmla`.
//   FreqFold  F adjacent rope frequencies are treated as one: fold i holds pairs iF … iF+F−1, and RoRoPE's PCA runs
//             over (Hkv·F)-dim vectors (every kv head's component at each of the fold's pairs; the real and the
//             imaginary row as two samples, so one orthogonal mixing serves both). With collapse c = D/Dr (TransMLA's
//             head_dim / qk_mqa_dim) the shared rope key keeps the top k = F/c principal components of every fold,
//             the m-th largest rotated at the frequency of pair iF + m·c (TransMLA subsamples cos/sin [::c]): the kept
//             frequencies are pairs 0, c, 2c, …, one geometric run, and each fold's other components stay in the
//             no-rope path. Exact when the fold's frequencies are equal; else the components rotate at one
//             frequency of their fold (the approximation FreqFold trades for more energy in the rope key). F = 1 is
//             our per-pair choice (rope-select.ts), which for Dr = D is TransMLA's freqfold 1.
//   balance   BKV-PCA's ratio = mean column norm of the rotated no-rope keys / mean column norm of the values, over
//             calibration activations; TransMLA's value columns skip the first qk_mqa_dim (= Dr) dims (the same
//             slice as the keys'), which is kept here as written.
// Legend: H heads, Hkv kv heads, D head dim, n = D/2 pairs, Dr rope dims, c = D/Dr collapse, F fold, k = F/c.

import type { LinalgProvider } from '../tensor/backend.js';
import type { RopePairing } from '../tensor/ops.js';
import { OptionError } from '../errors.js';
import { pairRows } from './heads.js';
import type { RopeComponent } from './rope-select.js';

export type Freqfold = number | 'auto';

/** TransMLA's collapse c = D/Dr, or null when the rope dim does not divide the head dim. */
export function collapseOf(D: number, Dr: number): number | null {
  return D % Dr === 0 ? D / Dr : null;
}

/** The folds TransMLA's `--freqfold auto` tries, in order: c, 2c, 4c, … while they divide the n pairs. */
export function autoFolds(D: number, Dr: number): number[] {
  const c = collapseOf(D, Dr);
  if (c === null) return [];
  const out: number[] = [];
  for (let F = c; F <= D / 2 && (D / 2) % F === 0; F *= 2) out.push(F);
  return out;
}

/** Refuse a fold TransMLA's layout cannot hold (OptionError on {freqfold}); F = 1 is always valid. */
export function checkFreqfold(F: number, D: number, Dr: number): void {
  if (!Number.isInteger(F) || F < 1) throw new OptionError('freqfold', F, 'expected a positive integer or auto');
  if (F === 1) return;
  const c = collapseOf(D, Dr);
  if (c === null) {
    throw new OptionError('freqfold', F, `expected 1: a fold keeps a fixed share of its components, so the rope dim must divide the head dim (head dim ${D}, {ropeDim} ${Dr})`);
  }
  const ok = Array.from({ length: D / 2 }, (_, i) => i + 1).filter((f) => (D / 2) % f === 0 && f % c === 0);
  if (!ok.includes(F)) {
    throw new OptionError('freqfold', F, `expected 1 or a multiple of head_dim/rope_dim = ${c} that divides the ${D / 2} rope pairs: ${ok.join(', ')} (head dim ${D}, {ropeDim} ${Dr})`);
  }
}

/** The teacher pairs whose frequencies a folded rope key uses: 0, c, 2c, … (Dr/2 of them). */
export function foldPairs(D: number, Dr: number): number[] {
  const c = D / Dr;
  return Array.from({ length: Dr / 2 }, (_, p) => p * c);
}

/**
 * The (Hkv·F)² key moment of fold i (both rows of each pair summed, or one `side`): entry (g·F + f, g'·F + f') =
 * E[Σ_s k_{g, iF+f, s} k_{g', iF+f', s}], from kMoment (Hkv·D)² of the keys.
 */
export function foldMoment(kMoment: Float64Array, pairing: RopePairing, Hkv: number, D: number, pairs: number[], side?: 0 | 1): Float64Array {
  const F = pairs.length;
  const n = Hkv * F;
  const KD = Hkv * D;
  const rows = pairs.map((j) => pairRows(pairing, D, j));
  const M = new Float64Array(n * n);
  for (let g = 0; g < Hkv; g++) {
    for (let f = 0; f < F; f++) {
      for (let g2 = 0; g2 < Hkv; g2++) {
        for (let f2 = 0; f2 < F; f2++) {
          let s = 0;
          for (const sd of side === undefined ? [0, 1] : [side]) s += kMoment[(g * D + rows[f]![sd]!) * KD + g2 * D + rows[f2]![sd]!]!;
          M[(g * F + f) * n + g2 * F + f2] = s;
        }
      }
    }
  }
  return M;
}

/** Eigenpairs of a symmetric matrix, largest eigenvalue first (columns of `vectors` as unit vectors). */
function sortedEigen(linalg: LinalgProvider, M: Float64Array, n: number): { value: number; u: Float64Array }[] {
  const { values, vectors } = linalg.eigh(M, n);
  return Array.from({ length: n }, (_, m) => ({ value: values[m]!, u: Float64Array.from({ length: n }, (_, t) => vectors[t * n + m]!), m }))
    .sort((a, b) => b.value - a.value || a.m - b.m)
    .map(({ value, u }) => ({ value, u }));
}

/**
 * FreqFold's rope components of one layer: for every fold i of F pairs, the top k = F·Dr/D eigenvectors of the fold's
 * key moment; the m-th is rotated at pair iF + m·c. Ordered by that pair (the rope key's pair order).
 * Each component's u has Hkv·F entries u[g·F + f] over `sources` = the fold's pairs.
 */
export function foldComponents(
  kMoment: Float64Array, pairing: RopePairing, Hkv: number, D: number, Dr: number, F: number, linalg: LinalgProvider,
): RopeComponent[] {
  checkFreqfold(F, D, Dr);
  const c = D / Dr;
  const k = F / c;
  const comps: RopeComponent[] = [];
  for (let i = 0; i < D / 2 / F; i++) {
    const sources = Array.from({ length: F }, (_, f) => i * F + f);
    const eig = sortedEigen(linalg, foldMoment(kMoment, pairing, Hkv, D, sources), Hkv * F);
    for (let m = 0; m < k; m++) comps.push({ pair: i * F + m * c, u: eig[m]!.u, score: eig[m]!.value, sources });
  }
  return comps;
}

/**
 * BKV-PCA's balance ratio as TransMLA computes it: the mean, over the rotated no-rope key columns, of each column's
 * activation norm, over the same mean for the value columns Dr … Hkv·D−1. The rotated key columns are, for every fold
 * (F pairs; F = 1: each pair), the eigenvectors of its key moment that the rope key does not keep, each row (real,
 * imaginary) a column. Returns 1 when there is no no-rope key energy (every component kept).
 * comps: the kept components (eigenvectors of their fold's moment: rope-select.ts transmla or foldComponents).
 */
export function transmlaBalance(
  kMoment: Float64Array, vDiag: Float64Array, pairing: RopePairing, Hkv: number, D: number, Dr: number, F: number,
  comps: RopeComponent[], linalg: LinalgProvider,
): number {
  const norms: number[] = [];
  for (let i = 0; i < D / 2 / F; i++) {
    const sources = Array.from({ length: F }, (_, f) => i * F + f);
    const kept = comps.filter((c) => (c.sources ?? [c.pair])[0] === sources[0]).map((c) => c.u);
    const sides = [0, 1].map((s) => foldMoment(kMoment, pairing, Hkv, D, sources, s as 0 | 1));
    const n = Hkv * F;
    for (const { u } of sortedEigen(linalg, foldMoment(kMoment, pairing, Hkv, D, sources), n)) {
      if (kept.some((v) => Math.abs(v.reduce((a, x, t) => a + x * u[t]!, 0)) > 0.5)) continue;
      for (const M of sides) {
        let e = 0;
        for (let t = 0; t < n; t++) for (let t2 = 0; t2 < n; t2++) e += u[t]! * M[t * n + t2]! * u[t2]!;
        norms.push(Math.sqrt(Math.max(e, 0)));
      }
    }
  }
  const vNorms = Array.from(vDiag.subarray(Dr), (x) => Math.sqrt(Math.max(x, 0)));
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const ratio = norms.length && vNorms.length ? mean(norms) / mean(vNorms) : 1;
  return Number.isFinite(ratio) && ratio > 1e-12 ? ratio : 1;
}

// Tests for src/linalg: the float64 SVD and symmetric eigendecomposition (reconstruction, orthogonality, ordering,
// accuracy on ill-conditioned and rank-deficient input, repeated values) and the PCA helpers built on them.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { svd } from '../src/linalg/svd.js';
import { eigh } from '../src/linalg/eigh.js';
import { tsLinalg } from '../src/linalg/ts-linalg.js';
import { GramAccumulator, covariance, energyRank, roundUp, topEigvecs } from '../src/linalg/pca.js';
import { gaussian, mulberry32, type Rng } from '../src/tensor/rng.js';

// ---- helpers (row-major matrices)

function randn(rng: Rng, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = gaussian(rng);
  return out;
}

/** C (m, n) = op(A)·op(B), A stored (m, k) or (k, m) when ta, B stored (k, n) or (n, k) when tb. */
function matmul(
  a: Float64Array,
  b: Float64Array,
  m: number,
  k: number,
  n: number,
  ta = false,
  tb = false,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += (ta ? a[p * m + i]! : a[i * k + p]!) * (tb ? b[j * k + p]! : b[p * n + j]!);
      c[i * n + j] = acc;
    }
  }
  return c;
}

/** Frobenius norm, scaled by the largest entry so matrices near overflow or underflow measure correctly. */
function frob(a: Float64Array): number {
  let big = 0;
  for (const v of a) big = Math.max(big, Math.abs(v));
  if (big === 0) return 0;
  let s = 0;
  for (const v of a) s += (v / big) ** 2;
  return big * Math.sqrt(s);
}

function diffFrob(a: Float64Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  return frob(a.map((v, i) => v - b[i]!));
}

function identity(n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

/** ‖UᵀU − I‖_F for U (rows, cols). */
function colOrthoError(u: Float64Array, rows: number, cols: number): number {
  return diffFrob(matmul(u, u, cols, rows, cols, true, false), identity(cols));
}

/** ‖VVᵀ − I‖_F for V (rows, cols). */
function rowOrthoError(v: Float64Array, rows: number, cols: number): number {
  return diffFrob(matmul(v, v, rows, cols, rows, false, true), identity(rows));
}

/** U·diag(s)·Vᵀ with u (m, k), vt (k, n). */
function reconstruct(u: Float64Array, s: Float64Array, vt: Float64Array, m: number, k: number, n: number): Float64Array {
  const us = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) us[i * k + j] = u[i * k + j]! * s[j]!;
  return matmul(us, vt, m, k, n);
}

/** A random (rows, cols) matrix with orthonormal columns (rows ≥ cols): modified Gram–Schmidt, applied twice. */
function randomOrthonormal(rng: Rng, rows: number, cols: number): Float64Array {
  const q = randn(rng, rows, cols);
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < cols; j++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < rows; i++) d += q[i * cols + p]! * q[i * cols + j]!;
        for (let i = 0; i < rows; i++) q[i * cols + j] = q[i * cols + j]! - d * q[i * cols + p]!;
      }
      let nrm = 0;
      for (let i = 0; i < rows; i++) nrm += q[i * cols + j]! ** 2;
      nrm = Math.sqrt(nrm);
      for (let i = 0; i < rows; i++) q[i * cols + j] = q[i * cols + j]! / nrm;
    }
  }
  return q;
}

/** Q1 (m, k)·diag(s)·Q2ᵀ with Q2 (n, k): a matrix with exactly known singular values s. */
function withSingularValues(rng: Rng, m: number, n: number, s: readonly number[]): Float64Array {
  const k = s.length;
  const q1 = randomOrthonormal(rng, m, k);
  const q2 = randomOrthonormal(rng, n, k);
  return reconstruct(q1, Float64Array.from(s), transpose(q2, n, k), m, k, n);
}

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j]!;
  return out;
}

/** Full check of an SVD result: shapes, reconstruction, orthogonality, ordering. Returns the result. */
function checkSvd(a: Float64Array, m: number, n: number, tol = 1e-12): ReturnType<typeof svd> {
  const copy = a.slice();
  const r = svd(a, m, n);
  const k = Math.min(m, n);
  const label = `(${m}, ${n})`;
  assert.deepEqual([r.m, r.n, r.k], [m, n, k], label);
  assert.equal(r.u.length, m * k, `${label} u length`);
  assert.equal(r.s.length, k, `${label} s length`);
  assert.equal(r.vt.length, k * n, `${label} vt length`);
  assert.deepEqual(a, copy, `${label} input modified`);
  const na = frob(a);
  const rec = diffFrob(reconstruct(r.u, r.s, r.vt, m, k, n), a) / (na === 0 ? 1 : na);
  assert.ok(rec <= tol, `${label} ‖A − USVᵀ‖/‖A‖ = ${rec}`);
  const eu = colOrthoError(r.u, m, k);
  assert.ok(eu <= tol, `${label} ‖UᵀU − I‖ = ${eu}`);
  const ev = rowOrthoError(r.vt, k, n);
  assert.ok(ev <= tol, `${label} ‖VᵀV − I‖ = ${ev}`);
  for (let j = 0; j < k; j++) {
    assert.ok(r.s[j]! >= 0, `${label} s[${j}] = ${r.s[j]} < 0`);
    if (j > 0) assert.ok(r.s[j - 1]! >= r.s[j]!, `${label} s not descending at ${j}: ${r.s[j - 1]} < ${r.s[j]}`);
  }
  return r;
}

// ---- SVD

test('svd: random matrices of many shapes reconstruct with orthonormal factors', () => {
  const rng = mulberry32(1234);
  const shapes: Array<[number, number]> = [
    [1, 1], [1, 5], [5, 1], [2, 2], [7, 3], [3, 7], [50, 20], [20, 50], [64, 64], [200, 120], [121, 200],
  ];
  for (const [m, n] of shapes) checkSvd(randn(rng, m, n), m, n);
});

test('svd: 1×1 and empty matrices', () => {
  const r = svd(Float64Array.of(-3), 1, 1);
  assert.equal(r.s[0], 3);
  assert.equal(r.u[0]! * r.vt[0]!, -1);
  const e = svd(new Float64Array(0), 0, 4);
  assert.equal(e.k, 0);
  assert.equal(e.s.length, 0);
});

test('svd: singular values match the eigenvalues of AᵀA', () => {
  const rng = mulberry32(7);
  const m = 30;
  const n = 12;
  const a = randn(rng, m, n);
  const { s } = svd(a, m, n);
  const { values } = eigh(matmul(a, a, n, m, n, true), n);
  for (let j = 0; j < n; j++) assert.ok(Math.abs(s[j]! ** 2 - values[j]!) <= 1e-12 * values[0]!, `σ²[${j}]`);
});

test('svd: ill-conditioned matrices (σ from 1 down to 1e-12) keep every singular value', () => {
  const rng = mulberry32(99);
  for (const [m, n, k] of [[40, 25, 25], [25, 40, 25], [60, 60, 60]] as const) {
    const sigma = Array.from({ length: k }, (_, j) => 10 ** ((-12 * j) / (k - 1)));
    const a = withSingularValues(rng, m, n, sigma);
    const r = checkSvd(a, m, n);
    for (let j = 0; j < k; j++) {
      const err = Math.abs(r.s[j]! - sigma[j]!);
      assert.ok(err <= 1e-14, `(${m}, ${n}) σ[${j}] = ${r.s[j]} expected ${sigma[j]} (abs err ${err})`);
      if (sigma[j]! >= 1e-4) assert.ok(err / sigma[j]! <= 1e-10, `(${m}, ${n}) σ[${j}] rel err ${err / sigma[j]!}`);
    }
  }
});

test('svd: rank-deficient matrices have trailing σ ≈ 0 and still reconstruct', () => {
  const rng = mulberry32(5);
  for (const [m, n] of [[20, 10], [10, 20]] as const) {
    const a = matmul(randn(rng, m, 3), randn(rng, 3, n), m, 3, n); // rank 3
    const r = checkSvd(a, m, n);
    assert.ok(r.s[2]! > 1e-3 * r.s[0]!, `(${m}, ${n}) σ[2] = ${r.s[2]} should be well above zero`);
    for (let j = 3; j < r.k; j++) assert.ok(r.s[j]! <= 1e-14 * r.s[0]!, `(${m}, ${n}) σ[${j}] = ${r.s[j]}`);
    assert.equal(energyRank(r.s, 1 - 1e-12), 3);
  }
});

test('svd: zero, orthogonal (all σ equal) and duplicate-column matrices', () => {
  const rng = mulberry32(11);
  const z = checkSvd(new Float64Array(8 * 5), 8, 5);
  assert.ok(z.s.every((v) => v === 0));
  const q = randomOrthonormal(rng, 9, 9);
  const r = checkSvd(q, 9, 9);
  for (const v of r.s) assert.ok(Math.abs(v - 1) <= 1e-14, `orthogonal σ = ${v}`);
  const dup = randn(rng, 12, 6);
  for (let i = 0; i < 12; i++) dup[i * 6 + 5] = dup[i * 6 + 2]!; // column 5 = column 2
  const d = checkSvd(dup, 12, 6);
  assert.ok(d.s[5]! <= 1e-14 * d.s[0]!);
});

test('svd: extreme scales neither overflow nor underflow', () => {
  const rng = mulberry32(3);
  const base = randn(rng, 15, 9);
  const ref = svd(base, 15, 9).s;
  for (const scale of [1e-200, 1e200]) {
    const a = base.map((v) => v * scale);
    const r = checkSvd(a, 15, 9);
    for (let j = 0; j < 9; j++) assert.ok(Math.abs(r.s[j]! / scale - ref[j]!) <= 1e-13 * ref[0]!, `scale ${scale}`);
  }
});

test('svd: rejects bad shapes and non-finite input', () => {
  assert.throws(() => svd(new Float64Array(5), 2, 3), /needs 6 values/);
  assert.throws(() => svd(Float64Array.of(1, NaN, 3, 4), 2, 2), /finite/);
  assert.throws(() => svd(Float64Array.of(1, Infinity), 1, 2), /finite/);
});

// ---- eigh

function checkEigh(a: Float64Array, n: number, tol = 1e-12): ReturnType<typeof eigh> {
  const copy = a.slice();
  const r = eigh(a, n);
  assert.equal(r.n, n);
  assert.equal(r.values.length, n);
  assert.equal(r.vectors.length, n * n);
  assert.deepEqual(a, copy, 'input modified');
  const scale = Math.max(frob(a), 1e-300);
  // A·V − V·Λ
  const av = matmul(a, r.vectors, n, n, n);
  const vl = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) vl[i * n + j] = r.vectors[i * n + j]! * r.values[j]!;
  const res = diffFrob(av, vl) / scale;
  assert.ok(res <= tol, `n=${n} ‖AV − VΛ‖/‖A‖ = ${res}`);
  const eo = colOrthoError(r.vectors, n, n);
  assert.ok(eo <= tol, `n=${n} ‖VᵀV − I‖ = ${eo}`);
  for (let j = 1; j < n; j++) assert.ok(r.values[j - 1]! >= r.values[j]!, `n=${n} values not descending at ${j}`);
  return r;
}

function randomSymmetric(rng: Rng, n: number): Float64Array {
  const g = randn(rng, n, n);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = g[i * n + j]! + g[j * n + i]!;
  return a;
}

test('eigh: random symmetric matrices', () => {
  const rng = mulberry32(2024);
  for (const n of [1, 2, 3, 5, 17, 64, 120]) checkEigh(randomSymmetric(rng, n), n);
  assert.equal(eigh(new Float64Array(0), 0).values.length, 0);
});

test('eigh: known spectrum with negative, tiny and clustered eigenvalues', () => {
  const rng = mulberry32(8);
  const lambda = [5, 2, 2 + 1e-9, 1e-13, 0, -1e-6, -3, -7];
  const n = lambda.length;
  const q = randomOrthonormal(rng, n, n);
  const a = reconstruct(q, Float64Array.from(lambda), transpose(q, n, n), n, n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i]!; // exactly symmetric
  const r = checkEigh(a, n);
  const sorted = [...lambda].sort((x, y) => y - x);
  for (let j = 0; j < n; j++) assert.ok(Math.abs(r.values[j]! - sorted[j]!) <= 1e-14 * 7 * 4, `λ[${j}] = ${r.values[j]}`);
});

test('eigh: repeated eigenvalues (identity, diagonal with repeats, rotated repeats, zero)', () => {
  const id = checkEigh(identity(6), 6);
  assert.ok(id.values.every((v) => v === 1));

  const diag = [3, 1, 3, 2, 1, 3];
  const d = new Float64Array(36);
  diag.forEach((v, i) => (d[i * 6 + i] = v));
  const r = checkEigh(d, 6);
  assert.deepEqual(Array.from(r.values), [3, 3, 3, 2, 1, 1]);

  const rng = mulberry32(77);
  const q = randomOrthonormal(rng, 10, 10);
  const lam = Float64Array.from([4, 4, 4, 4, 1, 1, 1, -2, -2, 0]);
  const a = reconstruct(q, lam, transpose(q, 10, 10), 10, 10, 10);
  for (let i = 0; i < 10; i++) for (let j = 0; j < i; j++) a[i * 10 + j] = a[j * 10 + i]!;
  const rr = checkEigh(a, 10);
  const want = [4, 4, 4, 4, 1, 1, 1, 0, -2, -2];
  for (let j = 0; j < 10; j++) assert.ok(Math.abs(rr.values[j]! - want[j]!) <= 1e-13, `λ[${j}] = ${rr.values[j]}`);

  const z = checkEigh(new Float64Array(25), 5);
  assert.ok(z.values.every((v) => v === 0));
});

test('eigh: symmetrises rounding-level asymmetry and rejects non-symmetric or non-finite input', () => {
  const rng = mulberry32(4);
  const n = 9;
  const a = randomSymmetric(rng, n);
  const noisy = a.slice();
  noisy[1] = noisy[1]! * (1 + 1e-9);
  const r = eigh(noisy, n);
  const ref = eigh(a, n);
  for (let j = 0; j < n; j++) assert.ok(Math.abs(r.values[j]! - ref.values[j]!) <= 1e-8);
  const bad = a.slice();
  bad[1] = bad[1]! + 1;
  assert.throws(() => eigh(bad, n), /not symmetric/);
  assert.throws(() => eigh(Float64Array.of(1, NaN, NaN, 1), 2), /finite/);
  assert.throws(() => eigh(new Float64Array(5), 2), /needs 4 values/);
});

// ---- provider and PCA helpers

test('tsLinalg is the provider over svd and eigh', () => {
  assert.equal(tsLinalg.name, 'ts');
  assert.equal(tsLinalg.svd, svd);
  assert.equal(tsLinalg.eigh, eigh);
});

test('covariance: XᵀX/N in float64, from f64 or f32, batched or not', () => {
  const rng = mulberry32(21);
  const rows = 150; // crosses the 64-row block boundary twice
  const cols = 13;
  const x = randn(rng, rows, cols);
  const want = matmul(x, x, cols, rows, cols, true).map((v) => v / rows);
  const got = covariance(x, rows, cols);
  assert.ok(diffFrob(got, want) <= 1e-13 * frob(want));
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) assert.equal(got[i * cols + j], got[j * cols + i]);

  const acc = new GramAccumulator(cols);
  acc.add(x.subarray(0, 70 * cols), 70);
  acc.add(x.subarray(70 * cols), 80);
  assert.equal(acc.rows, rows);
  assert.ok(diffFrob(acc.covariance(), want) <= 1e-13 * frob(want));

  const x32 = Float32Array.from(x);
  const want32 = matmul(Float64Array.from(x32), Float64Array.from(x32), cols, rows, cols, true).map((v) => v / rows);
  assert.ok(diffFrob(covariance(x32, rows, cols), want32) <= 1e-13 * frob(want32));

  assert.throws(() => covariance(new Float64Array(10), 3, 4), /needs 12 values/);
  assert.throws(() => new GramAccumulator(3).covariance(), /no rows/);
});

test('topEigvecs: leading eigenpairs with a fixed sign convention', () => {
  const rng = mulberry32(31);
  const n = 12;
  const k = 4;
  // Activations concentrated in a known 4-dimensional subspace plus small noise.
  const basis = randomOrthonormal(rng, n, k); // (n, k)
  const rows = 500;
  const x = new Float64Array(rows * n);
  const scales = [5, 3, 2, 1.5];
  for (let r = 0; r < rows; r++) {
    const c = scales.map((s) => s * gaussian(rng));
    for (let i = 0; i < n; i++) {
      let v = 1e-3 * gaussian(rng);
      for (let j = 0; j < k; j++) v += basis[i * k + j]! * c[j]!;
      x[r * n + i] = v;
    }
  }
  const cov = covariance(x, rows, n);
  const top = topEigvecs(cov, n, k, tsLinalg);
  assert.deepEqual([top.n, top.k, top.values.length, top.vectors.length], [n, k, k, n * k]);
  assert.ok(colOrthoError(top.vectors, n, k) <= 1e-12);
  const full = eigh(cov, n);
  for (let j = 0; j < k; j++) assert.equal(top.values[j], full.values[j]);
  // Each vector: Σ v = λ v, largest-magnitude entry positive.
  for (let j = 0; j < k; j++) {
    let big = 0;
    for (let i = 0; i < n; i++) {
      let cv = 0;
      for (let p = 0; p < n; p++) cv += cov[i * n + p]! * top.vectors[p * k + j]!;
      assert.ok(Math.abs(cv - top.values[j]! * top.vectors[i * k + j]!) <= 1e-12 * top.values[0]!);
      const v = top.vectors[i * k + j]!;
      if (Math.abs(v) > Math.abs(big)) big = v;
    }
    assert.ok(big > 0, `vector ${j} sign`);
  }
  // The found subspace is the planted one: ‖basisᵀ·P‖_F² = k when the spans agree.
  const overlap = matmul(basis, top.vectors, k, n, k, true);
  assert.ok(Math.abs(frob(overlap) ** 2 - k) <= 1e-5);
  assert.equal(topEigvecs(cov, n, 0, tsLinalg).vectors.length, 0);
  assert.throws(() => topEigvecs(cov, n, n + 1, tsLinalg), /k 13/);
});

test('energyRank on a known spectrum, roundUp', () => {
  const s = Float64Array.of(3, 2, 1, 0); // energies 9, 4, 1, 0 of 14
  assert.equal(energyRank(s, 0.5), 1); // 9/14 = 0.64
  assert.equal(energyRank(s, 9 / 14), 1); // exactly reached
  assert.equal(energyRank(s, 0.9), 2); // 13/14 = 0.93
  assert.equal(energyRank(s, 0.95), 3);
  assert.equal(energyRank(s, 1), 3); // the trailing zero is never needed
  assert.equal(energyRank(new Float64Array(5), 0.9), 0);
  // A geometric spectrum σ_j = 2^-j: the energy kept by r values is (1 − 4^-r)/(1 − 4^-10).
  const g = Float64Array.from({ length: 10 }, (_, j) => 2 ** -j);
  for (let r = 1; r <= 10; r++) {
    const frac = (1 - 4 ** -r) / (1 - 4 ** -10);
    assert.equal(energyRank(g, frac * (1 - 1e-12)), r);
  }
  assert.throws(() => energyRank(s, 0), /delta/);
  assert.throws(() => energyRank(s, 1.5), /delta/);
  assert.throws(() => energyRank(s, NaN), /delta/);

  assert.equal(roundUp(0, 8), 0);
  assert.equal(roundUp(1, 8), 8);
  assert.equal(roundUp(64, 32), 64);
  assert.equal(roundUp(65, 32), 96);
  assert.equal(roundUp(7, 1), 7);
  assert.throws(() => roundUp(3, 0), /multiple/);
  assert.throws(() => roundUp(2.5, 4), /r 2.5/);
});

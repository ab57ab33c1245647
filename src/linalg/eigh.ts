// Symmetric eigendecomposition in plain TypeScript float64: the reference (and LAPACK-less fallback) for PCA of
// activation covariances, where the converter keeps the leading eigenvectors as a latent basis.
// Algorithm: Householder reduction to tridiagonal form, then the implicit-shift QL iteration on the tridiagonal
// (EISPACK tred2 / tql2, as in JAMA), accumulating every transformation so the eigenvectors come out orthonormal to
// working precision. Backward stable: each eigenvalue carries an absolute error of order ε·‖A‖₂.
//
// Shape legend: n the order of A. Public arrays are row-major; the working matrix Z is kept column-major (column c at
// offset c·n) because the inner loops of both stages walk down columns.

import type { EighResult } from '../tensor/backend.js';
import { NonFiniteInputError } from '../tensor/finite.js';

const EPS = 2 ** -52;
// Inputs whose asymmetry max|a_ij − a_ji| exceeds this fraction of max|a_ij| are rejected as not symmetric; smaller
// asymmetry (a Gram matrix summed in float32 in two orders) is removed by using (A + Aᵀ)/2.
const SYMMETRY_TOL = 1e-4;
// tql2 needs one to three iterations per eigenvalue; LAPACK dsteqr gives up after 30. Only a guard against a hang.
const MAX_QL_ITER = 60;

/**
 * Eigendecomposition A = Q·diag(λ)·Qᵀ of a symmetric row-major (n, n) matrix.
 *
 * Returns values (n) descending and vectors (n, n) row-major with column j the unit eigenvector of values[j]
 * (A·q_j = λ_j·q_j, QᵀQ = I). Repeated eigenvalues get an orthonormal basis of their eigenspace. The sign of each
 * vector is whatever the algorithm produces. The decomposition is of (A + Aᵀ)/2; `a` is not modified.
 * Throws on a size mismatch, a non-finite entry, or a clearly non-symmetric matrix. Cost about 9n³ flops.
 */
export function eigh(a: Float64Array, n: number): EighResult {
  if (!Number.isInteger(n) || n < 0) throw new Error(`eigh: order ${n} must be a non-negative integer`);
  if (a.length !== n * n) throw new Error(`eigh: an (${n}, ${n}) matrix needs ${n * n} values, got ${a.length}`);
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (!Number.isFinite(v)) {
      throw new NonFiniteInputError(`eigh: entry ${i} (row ${Math.floor(i / n)}, column ${i % n}) is ${v}; input must be finite`);
    }
    if (Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
  }
  // Z = (A + Aᵀ)/2, which is its own column-major layout.
  const z = new Float64Array(n * n);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c <= r; c++) {
      const x = a[r * n + c]!;
      const y = a[c * n + r]!;
      if (Math.abs(x - y) > SYMMETRY_TOL * maxAbs) {
        throw new Error(`eigh: matrix is not symmetric: a[${r}][${c}] = ${x} but a[${c}][${r}] = ${y}`);
      }
      const v = 0.5 * (x + y);
      z[r * n + c] = v;
      z[c * n + r] = v;
    }
  }
  const d = new Float64Array(n); // diagonal, then eigenvalues
  const e = new Float64Array(n); // subdiagonal
  if (n > 0) {
    tridiagonalize(z, d, e, n);
    tridiagonalQL(z, d, e, n);
  }

  // Sort descending (ties keep their order) and write column j of the result from Z's column order[j].
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((i, j) => d[j]! - d[i]! || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const src = order[j]!;
    values[j] = d[src]!;
    const col = src * n;
    for (let r = 0; r < n; r++) vectors[r * n + j] = z[col + r]!;
  }
  return { values, vectors, n };
}

/**
 * Householder tridiagonalisation (tred2). On entry Z (column-major, z[c·n + r] = Z[r][c]) holds the symmetric matrix
 * (its lower triangle is read). On exit Z is the orthogonal Q with Qᵀ·A·Q = T, d the diagonal of T and e[1..n) its
 * subdiagonal (e[0] = 0). Row i is reduced for i = n−1 … 1 with a reflector P = I − u·uᵀ/h built from the scaled
 * row, applied as the rank-2 update A ← A − u·qᵀ − q·uᵀ with p = A·u/h, q = p − (uᵀp/2h)·u.
 */
function tridiagonalize(z: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = z[j * n + n - 1]!;

  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      // Row already reduced: nothing to annihilate.
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = z[j * n + i - 1]!;
        z[j * n + i] = 0;
        z[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        const v = d[k]! / scale;
        d[k] = v;
        h += v * v;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      e.fill(0, 0, i);

      // p = A·u (into e), using only the lower triangle.
      for (let j = 0; j < i; j++) {
        const cj = j * n;
        f = d[j]!;
        z[i * n + j] = f;
        g = e[j]! + z[cj + j]! * f;
        for (let k = j + 1; k < i; k++) {
          const zkj = z[cj + k]!;
          g += zkj * d[k]!;
          e[k] = e[k]! + zkj * f;
        }
        e[j] = g;
      }
      // p ← p/h, then q = p − (uᵀp / 2h)·u.
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      // A ← A − u·qᵀ − q·uᵀ on the lower triangle.
      for (let j = 0; j < i; j++) {
        const cj = j * n;
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k < i; k++) z[cj + k] = z[cj + k]! - (f * e[k]! + g * d[k]!);
        d[j] = z[cj + i - 1]!;
        z[cj + i] = 0;
      }
    }
    d[i] = h;
  }

  // Accumulate Q from the stored reflectors (Z's column i above the diagonal holds u of step i, d[i] its h).
  for (let i = 0; i < n - 1; i++) {
    const ci = i * n;
    const cn = (i + 1) * n; // column i+1
    z[ci + n - 1] = z[ci + i]!;
    z[ci + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = z[cn + k]! / h;
      for (let j = 0; j <= i; j++) {
        const cj = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += z[cn + k]! * z[cj + k]!;
        for (let k = 0; k <= i; k++) z[cj + k] = z[cj + k]! - g * d[k]!;
      }
    }
    z.fill(0, cn, cn + i + 1);
  }
  for (let j = 0; j < n; j++) {
    d[j] = z[j * n + n - 1]!;
    z[j * n + n - 1] = 0;
  }
  z[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/**
 * Implicit-shift QL on the symmetric tridiagonal (d, e) from tridiagonalize (tql2), rotating Z's columns along.
 * For each l, find the first m ≥ l with |e[m]| ≤ ε·max_{i≤l}(|d_i| + |e_i|); while m > l, shift by the eigenvalue of
 * the leading 2×2 nearest d[l] (subtracted from the whole block, accumulated in f) and sweep Givens rotations from m
 * up to l. On exit d holds the eigenvalues (unsorted) and Z's column i the eigenvector of d[i].
 */
function tridiagonalQL(z: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;

  let f = 0;
  let tst1 = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]!) > EPS * tst1) m++;

    if (m > l) {
      let iter = 0;
      do {
        if (++iter > MAX_QL_ITER) {
          throw new Error(`eigh: QL iteration did not converge for eigenvalue ${l} of ${n}`);
        }
        // Shift.
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;

        // QL sweep from m − 1 up to l.
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          // Columns (i, i+1) of Z ← rotation.
          const ci = i * n;
          const cn = ci + n;
          for (let k = 0; k < n; k++) {
            const zi = z[ci + k]!;
            const zn = z[cn + k]!;
            z[cn + k] = s * zi + c * zn;
            z[ci + k] = c * zi - s * zn;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > EPS * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

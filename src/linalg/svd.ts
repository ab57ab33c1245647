// Thin singular value decomposition in plain TypeScript float64: the reference every LAPACK-backed provider is
// tested against, and the fallback when no LAPACK is installed. The converter factors attention weights with it, where
// the small singular values decide the latent rank, so it uses the backward-stable Golub–Kahan–Reinsch algorithm
// (Householder bidiagonalisation, then implicit-shift QR on the bidiagonal, as in LINPACK dsvdc / JAMA) rather than
// the normal equations AᵀA, which would square the condition number and lose every σ below √ε·σ₁.
//
// Shape legend: m rows, n columns of A, k = min(m, n). Public arrays are row-major; internally every matrix is kept
// column-major (column j at offset j·rows) because each inner loop of the algorithm walks down a column.

import type { SvdResult } from '../tensor/backend.js';
import { assertFiniteMatrix } from '../tensor/finite.js';

const EPS = 2 ** -52;
// Below this a bidiagonal entry is treated as zero whatever its neighbours are (dsvdc's "tiny"): keeps the
// negligibility tests meaningful when the matrix is scaled near the underflow threshold.
const TINY = 2 ** -966;

/**
 * Thin SVD A = U·diag(s)·Vᵀ of a row-major (m, n) matrix, any aspect ratio.
 *
 * Returns u (m, k) with orthonormal columns, s (k) descending and ≥ 0, vt (k, n) with orthonormal rows, k = min(m, n).
 * Backward stable: the computed factors are the exact SVD of A + E with ‖E‖₂ ≈ ε‖A‖₂, so every σ carries an absolute
 * error of order ε·σ₁ however ill-conditioned A is. For m < n it factors Aᵀ = V·S·Uᵀ and swaps the roles.
 * The signs of matching singular-vector pairs are whatever the algorithm produces (u_j·s_j·v_jᵀ is unique for a
 * simple σ_j, the signs are not). Cost about 4mn² + 8n³ flops for m ≥ n, plus the QR sweeps (≈ 2 per σ).
 * `a` is not modified. Throws on a size mismatch or a non-finite entry.
 */
export function svd(a: Float64Array, m: number, n: number): SvdResult {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 0 || n < 0) {
    throw new Error(`svd: shape (${m}, ${n}) must be two non-negative integers`);
  }
  if (a.length !== m * n) throw new Error(`svd: shape (${m}, ${n}) needs ${m * n} values, got ${a.length}`);
  assertFiniteMatrix('svd', a, n);
  const k = Math.min(m, n);
  if (k === 0) {
    return { u: new Float64Array(0), s: new Float64Array(0), vt: new Float64Array(0), m, n, k };
  }

  if (m >= n) {
    // Column-major copy of A (m, n).
    const work = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      const row = i * n;
      for (let j = 0; j < n; j++) work[j * m + i] = a[row + j]!;
    }
    const f = svdTall(work, m, n);
    // U column-major (m, n) → row-major u (m, n); V column-major (n, n) is already Vᵀ row-major.
    return { u: transposeColMajor(f.u, m, n), s: f.s, vt: f.v, m, n, k };
  }
  // m < n: the row-major (m, n) buffer of A is the column-major buffer of Aᵀ (n, m).
  // Aᵀ = U'·S·V'ᵀ  ⇒  A = V'·S·U'ᵀ: u = V' (m, m), vt = U'ᵀ (m, n).
  const f = svdTall(Float64Array.from(a), n, m);
  return { u: transposeColMajor(f.v, m, m), s: f.s, vt: f.u, m, n, k };
}

/** Row-major copy of a column-major (rows, cols) matrix. */
function transposeColMajor(c: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const col = j * rows;
    for (let i = 0; i < rows; i++) out[i * cols + j] = c[col + i]!;
  }
  return out;
}

/** ‖x[lo..hi)‖₂ without overflow or underflow (scaled by the largest magnitude, as BLAS dnrm2). */
function norm2(x: Float64Array, lo: number, hi: number): number {
  let big = 0;
  for (let i = lo; i < hi; i++) {
    const v = Math.abs(x[i]!);
    if (v > big) big = v;
  }
  if (big === 0) return 0;
  const inv = 1 / big;
  let ss = 0;
  for (let i = lo; i < hi; i++) {
    const v = x[i]! * inv;
    ss += v * v;
  }
  return big * Math.sqrt(ss);
}

/** √(a² + b²) without destructive overflow/underflow; faster than Math.hypot for two arguments. */
function hypot2(a: number, b: number): number {
  const x = Math.abs(a);
  const y = Math.abs(b);
  if (x > y) {
    const r = y / x;
    return x * Math.sqrt(1 + r * r);
  }
  if (y === 0) return 0;
  const r = x / y;
  return y * Math.sqrt(1 + r * r);
}

/** Apply the plane rotation [c s; −s c] to the column pair (x, y) of a column-major matrix, `len` rows:
 *  x ← c·x + s·y, y ← −s·x + c·y. */
function rotateColumns(q: Float64Array, xOff: number, yOff: number, len: number, c: number, s: number): void {
  for (let i = 0; i < len; i++) {
    const x = q[xOff + i]!;
    const y = q[yOff + i]!;
    q[xOff + i] = c * x + s * y;
    q[yOff + i] = c * y - s * x;
  }
}

interface TallSvd {
  /** (m, n) column-major. */
  u: Float64Array;
  /** (n) descending. */
  s: Float64Array;
  /** (n, n) column-major (so its buffer read row-major is Vᵀ). */
  v: Float64Array;
}

/**
 * Golub–Kahan–Reinsch SVD of a column-major (m, n) matrix with m ≥ n ≥ 1, overwriting `a`.
 *
 * Stage 1 (bidiagonalisation): alternate Householder reflections from the left (zeroing column k below the diagonal)
 * and from the right (zeroing row k right of the superdiagonal), so that Hₙ…H₁·A·G₁…Gₙ₋₂ = B, upper bidiagonal with
 * diagonal s and superdiagonal e. Each reflector I − v·vᵀ/v₀ is stored with its vector scaled so that v₀ = 1 + |x₀|/‖x‖
 * (dsvdc's convention), then U = H₁…Hₙ and V = G₁…Gₙ₋₂ are formed explicitly by backward accumulation.
 * Stage 2 (diagonalisation): implicit-shift QR sweeps on B (a Wilkinson shift from the trailing 2×2 of BᵀB, the bulge
 * chased down by Givens rotations applied to U's and V's columns), splitting wherever a superdiagonal entry becomes
 * negligible relative to its diagonal neighbours, and deflating a negligible diagonal entry with an extra rotation
 * chain. Converged values are made non-negative and insertion-sorted into descending order.
 */
function svdTall(a: Float64Array, m: number, n: number): TallSvd {
  const s = new Float64Array(n);
  const e = new Float64Array(n);
  const work = new Float64Array(m);
  const U = new Float64Array(m * n); // (m, n) column-major
  const V = new Float64Array(n * n); // (n, n) column-major

  // Number of left (column) and right (row) reflections.
  const nct = Math.min(m - 1, n);
  const nrt = Math.max(0, Math.min(n - 2, m));

  // ---- Stage 1: bidiagonalisation.
  for (let k = 0; k < Math.max(nct, nrt); k++) {
    const ck = k * m;
    if (k < nct) {
      // Left reflector for column k, rows k..m−1; s[k] receives the new diagonal entry −sign(a_kk)·‖x‖.
      let nrm = norm2(a, ck + k, ck + m);
      if (nrm !== 0) {
        if (a[ck + k]! < 0) nrm = -nrm;
        for (let i = k; i < m; i++) a[ck + i] = a[ck + i]! / nrm;
        a[ck + k] = a[ck + k]! + 1;
      }
      s[k] = -nrm;
    }
    for (let j = k + 1; j < n; j++) {
      const cj = j * m;
      if (k < nct && s[k] !== 0) {
        // a_j ← (I − v·vᵀ/v₀)·a_j
        let t = 0;
        for (let i = k; i < m; i++) t += a[ck + i]! * a[cj + i]!;
        t = -t / a[ck + k]!;
        for (let i = k; i < m; i++) a[cj + i] = a[cj + i]! + t * a[ck + i]!;
      }
      // Row k right of the diagonal, for the right reflector below.
      e[j] = a[cj + k]!;
    }
    if (k < nct) {
      // Keep the left reflector's vector in U's column k for the back accumulation.
      for (let i = k; i < m; i++) U[ck + i] = a[ck + i]!;
    }
    if (k < nrt) {
      // Right reflector for row k, columns k+1..n−1; e[k] receives the new superdiagonal entry.
      let nrm = norm2(e, k + 1, n);
      if (nrm !== 0) {
        if (e[k + 1]! < 0) nrm = -nrm;
        for (let i = k + 1; i < n; i++) e[i] = e[i]! / nrm;
        e[k + 1] = e[k + 1]! + 1;
      }
      e[k] = -nrm;
      if (k + 1 < m && nrm !== 0) {
        // A[k+1:, k+1:] ← A[k+1:, k+1:]·(I − w·wᵀ/w₀): work = A·w, then a_j −= (w_j/w₀)·work.
        work.fill(0, k + 1, m);
        for (let j = k + 1; j < n; j++) {
          const ej = e[j]!;
          const cj = j * m;
          for (let i = k + 1; i < m; i++) work[i] = work[i]! + ej * a[cj + i]!;
        }
        const w0 = e[k + 1]!;
        for (let j = k + 1; j < n; j++) {
          const t = -e[j]! / w0;
          const cj = j * m;
          for (let i = k + 1; i < m; i++) a[cj + i] = a[cj + i]! + t * work[i]!;
        }
      }
      // Keep the right reflector's vector in V's column k.
      const cvk = k * n;
      for (let i = k + 1; i < n; i++) V[cvk + i] = e[i]!;
    }
  }

  // The bidiagonal of order p = n (m ≥ n here): diagonal s[0..n), superdiagonal e[0..n−1).
  let p = n;
  if (nct < n) s[nct] = a[nct * m + nct]!;
  if (nrt + 1 < p) e[nrt] = a[(p - 1) * m + nrt]!;
  e[p - 1] = 0;

  // U = H₁…H_nct applied to the first n columns of I, accumulated from the last reflector backwards.
  for (let j = nct; j < n; j++) {
    U.fill(0, j * m, (j + 1) * m);
    U[j * m + j] = 1;
  }
  for (let k = nct - 1; k >= 0; k--) {
    const ck = k * m;
    if (s[k] !== 0) {
      const v0 = U[ck + k]!;
      for (let j = k + 1; j < n; j++) {
        const cj = j * m;
        let t = 0;
        for (let i = k; i < m; i++) t += U[ck + i]! * U[cj + i]!;
        t = -t / v0;
        for (let i = k; i < m; i++) U[cj + i] = U[cj + i]! + t * U[ck + i]!;
      }
      // Column k of H_k itself: H_k·e_k = e_k − v·(v_k/v₀) = e_k − v, as v_k = v₀.
      for (let i = k; i < m; i++) U[ck + i] = -U[ck + i]!;
      U[ck + k] = 1 + U[ck + k]!;
      U.fill(0, ck, ck + k);
    } else {
      U.fill(0, ck, ck + m);
      U[ck + k] = 1;
    }
  }

  // V = G₁…G_nrt, likewise.
  for (let k = n - 1; k >= 0; k--) {
    const ck = k * n;
    if (k < nrt && e[k] !== 0) {
      const w0 = V[ck + k + 1]!;
      for (let j = k + 1; j < n; j++) {
        const cj = j * n;
        let t = 0;
        for (let i = k + 1; i < n; i++) t += V[ck + i]! * V[cj + i]!;
        t = -t / w0;
        for (let i = k + 1; i < n; i++) V[cj + i] = V[cj + i]! + t * V[ck + i]!;
      }
    }
    V.fill(0, ck, ck + n);
    V[ck + k] = 1;
  }

  // ---- Stage 2: implicit-shift QR on the bidiagonal.
  const pp = p - 1;
  // LAPACK dbdsqr's bound on the total number of sweeps (≈ 2 per σ in practice); only a guard against a hang.
  const maxSweeps = 6 * n * n + 60;
  let sweeps = 0;
  while (p > 0) {
    // Find the largest k < p−1 with e[k] negligible (k = −1 if none); the block k+1..p−1 is unreduced.
    let k: number;
    for (k = p - 2; k >= 0; k--) {
      if (Math.abs(e[k]!) <= TINY + EPS * (Math.abs(s[k]!) + Math.abs(s[k + 1]!))) {
        e[k] = 0;
        break;
      }
    }
    // kase 1: s[p−1] negligible, deflate it; 2: s[ks] negligible inside the block, split there;
    // 3: a QR sweep on the block; 4: e[p−2] negligible, s[p−1] has converged.
    let kase: 1 | 2 | 3 | 4;
    if (k === p - 2) {
      kase = 4;
    } else {
      let ks: number;
      for (ks = p - 1; ks > k; ks--) {
        const t = (ks !== p ? Math.abs(e[ks]!) : 0) + (ks !== k + 1 ? Math.abs(e[ks - 1]!) : 0);
        if (Math.abs(s[ks]!) <= TINY + EPS * t) {
          s[ks] = 0;
          break;
        }
      }
      if (ks === k) {
        kase = 3;
      } else if (ks === p - 1) {
        kase = 1;
      } else {
        kase = 2;
        k = ks;
      }
    }
    k++;

    switch (kase) {
      case 1: {
        // s[p−1] = 0: chase e[p−2] up the column with rotations of V's columns (j, p−1).
        let f = e[p - 2]!;
        e[p - 2] = 0;
        for (let j = p - 2; j >= k; j--) {
          const t = hypot2(s[j]!, f);
          const cs = s[j]! / t;
          const sn = f / t;
          s[j] = t;
          if (j !== k) {
            f = -sn * e[j - 1]!;
            e[j - 1] = cs * e[j - 1]!;
          }
          rotateColumns(V, j * n, (p - 1) * n, n, cs, sn);
        }
        break;
      }
      case 2: {
        // s[k−1] = 0: chase e[k−1] along the row with rotations of U's columns (j, k−1).
        let f = e[k - 1]!;
        e[k - 1] = 0;
        for (let j = k; j < p; j++) {
          const t = hypot2(s[j]!, f);
          const cs = s[j]! / t;
          const sn = f / t;
          s[j] = t;
          f = -sn * e[j]!;
          e[j] = cs * e[j]!;
          rotateColumns(U, j * m, (k - 1) * m, m, cs, sn);
        }
        break;
      }
      case 3: {
        if (++sweeps > maxSweeps) {
          throw new Error(`svd: QR iteration did not converge after ${maxSweeps} sweeps (matrix (${m}, ${n}))`);
        }
        // Wilkinson shift: the eigenvalue of the trailing 2×2 of BᵀB nearer its last diagonal entry, computed on
        // values scaled by the block's largest entry to avoid overflow.
        const scale = Math.max(
          Math.abs(s[p - 1]!),
          Math.abs(s[p - 2]!),
          Math.abs(e[p - 2]!),
          Math.abs(s[k]!),
          Math.abs(e[k]!),
        );
        const sp = s[p - 1]! / scale;
        const spm1 = s[p - 2]! / scale;
        const epm1 = e[p - 2]! / scale;
        const sk = s[k]! / scale;
        const ek = e[k]! / scale;
        const b = ((spm1 + sp) * (spm1 - sp) + epm1 * epm1) / 2;
        const c = sp * epm1 * (sp * epm1);
        let shift = 0;
        if (b !== 0 || c !== 0) {
          shift = Math.sqrt(b * b + c);
          if (b < 0) shift = -shift;
          shift = c / (b + shift);
        }
        let f = (sk + sp) * (sk - sp) + shift;
        let g = sk * ek;

        // Chase the bulge from (k, k) down to the end of the block.
        for (let j = k; j < p - 1; j++) {
          let t = hypot2(f, g);
          let cs = f / t;
          let sn = g / t;
          if (j !== k) e[j - 1] = t;
          f = cs * s[j]! + sn * e[j]!;
          e[j] = cs * e[j]! - sn * s[j]!;
          g = sn * s[j + 1]!;
          s[j + 1] = cs * s[j + 1]!;
          rotateColumns(V, j * n, (j + 1) * n, n, cs, sn);
          t = hypot2(f, g);
          cs = f / t;
          sn = g / t;
          s[j] = t;
          f = cs * e[j]! + sn * s[j + 1]!;
          s[j + 1] = -sn * e[j]! + cs * s[j + 1]!;
          g = sn * e[j + 1]!;
          e[j + 1] = cs * e[j + 1]!;
          if (j < m - 1) rotateColumns(U, j * m, (j + 1) * m, m, cs, sn);
        }
        e[p - 2] = f;
        break;
      }
      case 4: {
        // s[k] has converged: make it non-negative, then move it down past any larger values below it.
        if (s[k]! <= 0) {
          s[k] = s[k]! < 0 ? -s[k]! : 0;
          const ck = k * n;
          for (let i = 0; i <= pp; i++) V[ck + i] = -V[ck + i]!;
        }
        while (k < pp && s[k]! < s[k + 1]!) {
          const t = s[k]!;
          s[k] = s[k + 1]!;
          s[k + 1] = t;
          swapColumns(V, k * n, (k + 1) * n, n);
          if (k < m - 1) swapColumns(U, k * m, (k + 1) * m, m);
          k++;
        }
        p--;
        break;
      }
    }
  }
  return { u: U, s, v: V };
}

function swapColumns(q: Float64Array, xOff: number, yOff: number, len: number): void {
  for (let i = 0; i < len; i++) {
    const t = q[xOff + i]!;
    q[xOff + i] = q[yOff + i]!;
    q[yOff + i] = t;
  }
}

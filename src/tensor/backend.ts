// The Backend interface (STYLE.md item 3) and the registry that picks one by name.
// Host backends (ref, cpu) keep tensors in JS typed arrays; a device backend would add upload/download.

import type { DType } from './tensor.js';
import type { OpInputs, OpName, OpOutputs, OpParams } from './ops.js';

export interface Backend {
  /** 'ref' | 'cpu' | … */
  readonly name: string;
  /** The dtype new tensors of this backend use for activations and weights. */
  readonly dtype: DType;
  /** Whether this backend runs `op` on `dtype` natively (a backend may delegate the rest to ref). */
  supports(op: OpName, dtype: DType): boolean;
  /** Run one op. Validates shapes; throws on unsupported input. */
  run<O extends OpName>(op: O, inputs: OpInputs<O>, params: OpParams<O>): OpOutputs<O>;
  /** Linear algebra in float64 (SVD, symmetric eigendecomposition), LAPACK where available. */
  readonly linalg: LinalgProvider;
  /** Number of threads the backend uses (1 for ref). */
  readonly threads: number;
}

export interface SvdResult {
  /** (m, k) left singular vectors, row-major, k = min(m, n). */
  u: Float64Array;
  /** (k) singular values, descending. */
  s: Float64Array;
  /** (k, n) right singular vectors transposed, row-major. */
  vt: Float64Array;
  m: number;
  n: number;
  k: number;
}

export interface EighResult {
  /** (n) eigenvalues, descending. */
  values: Float64Array;
  /** (n, n) row-major; column j is the eigenvector of values[j]. */
  vectors: Float64Array;
  n: number;
}

export interface LinalgProvider {
  readonly name: string;
  /** Thin SVD of a row-major (m, n) matrix. */
  svd(a: Float64Array, m: number, n: number): SvdResult;
  /** Eigendecomposition of a symmetric row-major (n, n) matrix. */
  eigh(a: Float64Array, n: number): EighResult;
}

/** A backend that could not load, with the reason (the factory never throws at import). */
export interface Unavailable {
  available: false;
  reason: string;
}

// The Backend interface (STYLE.md item 3) and the types its members use. Each member is commented as ggml's
// ggml-backend-impl.h comments its table: what it does, who owns the memory, what it may assume.
// Storage model: a backend owns the buffers of the tensors it allocates (tensor/storage.ts: a pool per backend that
// counts live buffers and bytes). Host backends (ref, cpu) keep them as JS typed arrays, so any host tensor is a
// valid input to either of them without a copy; a device backend's run() accepts only its own tensors, and data
// crosses with upload / download, so an op never copies its inputs behind the caller's back.

import type { DType, HostArray } from './tensor.js';
import type { Tensor } from './tensor.js';
import type { MemoryStats } from './storage.js';
import type { OpInputs, OpName, OpOutputs, OpParams } from './ops.js';

export interface Backend {
  /** 'ref' | 'cpu' | … */
  readonly name: string;
  /** The working dtype of activations on this backend (f32); weights may be stored narrower (see supports). */
  readonly dtype: DType;
  /** Whether the backend's tensors live in host memory (then `Tensor.data`/`toHost()` read them directly). */
  readonly host: boolean;
  /** A zero-filled tensor of `shape` and `dtype` in a new buffer owned by this backend. */
  allocate(shape: readonly number[], dtype: DType): Tensor;
  /** Release a tensor's buffer now (all views of it); idempotent. Same as t.dispose(); tidy() calls it for you. */
  free(t: Tensor): void;
  /** Host → backend: a tensor owned by this backend holding `values` (f32/f64 values, or bf16/f16 bit patterns).
   *  Host backends adopt the array without copying: the caller must not write to it afterwards. */
  upload(shape: readonly number[], dtype: DType, values: HostArray): Tensor;
  /** Backend → host: the tensor's contents in its own dtype (raw 16-bit patterns for bf16/f16). Host backends
   *  return their array itself (no copy): treat it as read-only. */
  download(t: Tensor): HostArray;
  /** Wait until every op issued so far has finished (host backends finish each op before run() returns). */
  sync(): void;
  /** Live buffers and bytes this backend owns now, and the peak. */
  memory(): MemoryStats;
  /** Whether this backend runs `op` natively with `dtype` storage: the activations' dtype, or, for the weight
   *  operand of matmul (b) and the table of embedding, the weight's dtype (bf16/f16 with f32 accumulation). */
  supports(op: OpName, dtype: DType): boolean;
  /** Run one op. Validates shapes and dtypes; throws on unsupported input. Outputs are new tensors owned by this
   *  backend (except the in-place ops, which write into their first input). */
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

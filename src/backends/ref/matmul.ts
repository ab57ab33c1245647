// Reference matrix multiply (plain loops, float64 accumulation).
// Shape legend: M rows of the result, K the contracted axis, N columns of the result, "…" batch axes.
// There is no separate backward kernel: for C = A·B, dA = dC·Bᵀ and dB = Aᵀ·dC are matmuls with transB / transA
// (a shared weight b with no batch axes gets its gradient by folding the batch into M first). The tests check this.
// The weight operand b may be stored bf16/f16: its values are widened exactly and accumulated in float64 like the
// rest, so this is the oracle for the cpu backend's half-weight kernels (same rounded weights, different order).

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** Batched matrix product C[…, i, j] = Σ_k A[…, i, k] · B[…, k, j], where A = aᵀ when transA
 *  (a stored (…, K, M)) and B = bᵀ when transB (b stored (…, N, K)). b either has the same batch axes as a or
 *  none (a shared weight).
 *  a (…, M, K), b (…, K, N) → (…, M, N), dtype of a (f32/f64; b may be bf16/f16). Inputs are assumed validated. */
export function matmul([a, b]: OpInputs<'matmul'>, { transA, transB }: OpParams<'matmul'>): OpOutputs<'matmul'> {
  const ra = a.rank;
  const rb = b.rank;
  const M = transA ? a.dim(ra - 1) : a.dim(ra - 2);
  const K = transA ? a.dim(ra - 2) : a.dim(ra - 1);
  const N = transB ? b.dim(rb - 2) : b.dim(rb - 1);
  const batchShape = a.shape.slice(0, ra - 2);
  let batch = 1;
  for (const d of batchShape) batch *= d;
  // A b without batch axes is reused by every batch entry: its stride between batches is 0.
  const bStride = rb === 2 ? 0 : K * N;
  const out = Tensor.zeros([...batchShape, M, N], a.dtype);
  const A = a.data;
  const Bd = b.toHost(); // bf16/f16 widened exactly (a copy); f32/f64 as stored
  const C = out.data;
  // Strides (row, col) of the logical A (M, K) and B (K, N) inside their stored layouts.
  const aRow = transA ? 1 : K;
  const aCol = transA ? M : 1;
  const bRow = transB ? 1 : N;
  const bCol = transB ? K : 1;
  for (let p = 0; p < batch; p++) {
    const aOff = p * M * K;
    const bOff = p * bStride;
    const cOff = p * M * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        let ia = aOff + i * aRow;
        let ib = bOff + j * bCol;
        for (let k = 0; k < K; k++) {
          acc += A[ia]! * Bd[ib]!;
          ia += aCol;
          ib += bRow;
        }
        C[cOff + i * N + j] = acc;
      }
    }
  }
  return [out];
}

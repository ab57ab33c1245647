// Reference RMSNorm, forward and backward.
// Shape legend: N rows (any leading axes flattened: B·T), C model width.
// The forward returns rstd (N) so the backward need not recompute the statistics (llm.c keeps mean and rstd).
// The backward returns fresh gradients (it overwrites nothing, accumulates nothing): the caller adds them up.

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** rstd[n] = 1/√(mean_c x[n,c]² + eps);  y[n,c] = x[n,c]·rstd[n]·w[c].
 *  x (N, C), w (C) → y (N, C), rstd (N). Leading axes of x beyond one are accepted: x (…, C) → rstd (…). */
export function rmsnorm([x, w]: OpInputs<'rmsnorm'>, { eps }: OpParams<'rmsnorm'>): OpOutputs<'rmsnorm'> {
  const C = x.dim(-1);
  const N = C === 0 ? 0 : x.size / C;
  const y = Tensor.zeros(x.shape, x.dtype);
  const rstd = Tensor.zeros(x.shape.slice(0, -1), x.dtype);
  const X = x.data;
  const W = w.data;
  const Y = y.data;
  for (let n = 0; n < N; n++) {
    const off = n * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += X[off + c]! * X[off + c]!;
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd.data[n] = r;
    for (let c = 0; c < C; c++) Y[off + c] = X[off + c]! * r * W[c]!;
  }
  return [y, rstd];
}

/** With r = rstd[n] and x̂ = x·r:
 *    dx[n,c] = r·(w[c]·dy[n,c] − x̂[n,c]·(1/C)·Σ_k dy[n,k]·w[k]·x̂[n,k]),
 *    dw[c]   = Σ_n dy[n,c]·x̂[n,c].
 *  (from ∂r/∂x_k = −r³·x_k/C). dy (N, C), x (N, C), w (C), rstd (N) → dx (N, C), dw (C). */
export function rmsnormBackward(
  [dy, x, w, rstd]: OpInputs<'rmsnormBackward'>,
  _p: OpParams<'rmsnormBackward'>,
): OpOutputs<'rmsnormBackward'> {
  const C = x.dim(-1);
  const N = C === 0 ? 0 : x.size / C;
  const dx = Tensor.zeros(x.shape, x.dtype);
  const dwAcc = new Float64Array(C);
  const DY = dy.data;
  const X = x.data;
  const W = w.data;
  const DX = dx.data;
  for (let n = 0; n < N; n++) {
    const off = n * C;
    const r = rstd.data[n]!;
    let dot = 0;
    for (let c = 0; c < C; c++) {
      const xh = X[off + c]! * r;
      dot += DY[off + c]! * W[c]! * xh;
      dwAcc[c] = dwAcc[c]! + DY[off + c]! * xh;
    }
    const mean = dot / C;
    for (let c = 0; c < C; c++) DX[off + c] = r * (W[c]! * DY[off + c]! - X[off + c]! * r * mean);
  }
  const dw = Tensor.zeros([C], x.dtype);
  dw.data.set(dwAcc);
  return [dx, dw];
}

// Reference SwiGLU gate, forward and backward: y = silu(g)·u, the nonlinearity of Llama-style MLPs.
// Shape legend: any shape "…" (in practice (N, F), F the MLP width); g, u and dy share it.
// The backward returns fresh gradients (nothing accumulates in place).

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** σ(x) = 1/(1 + e^−x); for x → −∞ e^−x overflows to +∞ and σ → 0 exactly, never NaN. */
function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** y = silu(g)·u = g·σ(g)·u.  g (…), u (…) → (…). */
export function swiglu([g, u]: OpInputs<'swiglu'>, _p: OpParams<'swiglu'>): OpOutputs<'swiglu'> {
  const out = Tensor.zeros(g.shape, g.dtype);
  const G = g.data;
  const U = u.data;
  const O = out.data;
  for (let i = 0; i < G.length; i++) {
    const x = G[i]!;
    O[i] = x * sigmoid(x) * U[i]!;
  }
  return [out];
}

/** dg = dy·u·σ(g)·(1 + g·(1 − σ(g))),  du = dy·g·σ(g).
 *  dy (…), g (…), u (…) → dg (…), du (…). */
export function swigluBackward(
  [dy, g, u]: OpInputs<'swigluBackward'>,
  _p: OpParams<'swigluBackward'>,
): OpOutputs<'swigluBackward'> {
  const dg = Tensor.zeros(g.shape, dy.dtype);
  const du = Tensor.zeros(g.shape, dy.dtype);
  const DY = dy.data;
  const G = g.data;
  const U = u.data;
  for (let i = 0; i < G.length; i++) {
    const x = G[i]!;
    const s = sigmoid(x);
    dg.data[i] = DY[i]! * U[i]! * s * (1 + x * (1 - s));
    du.data[i] = DY[i]! * x * s;
  }
  return [dg, du];
}

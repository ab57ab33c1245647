// Reference AdamW optimiser step, in place on the parameter and its two moment buffers.
// Shape legend: any shape "…"; param, grad, m and v share it.
// Matches torch.optim.AdamW (decoupled weight decay, bias-corrected moments, eps added after the square root).

import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** With t = step (counting from 1):
 *    p ← p − lr·wd·p                              (decoupled weight decay, applied to the old p)
 *    m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²
 *    p ← p − lr·(m/(1 − β₁ᵗ)) / (√(v/(1 − β₂ᵗ)) + eps).
 *  param (…), grad (…), m (…), v (…) → no outputs; param, m and v are updated in place. */
export function adamw([param, grad, m, v]: OpInputs<'adamw'>, params: OpParams<'adamw'>): OpOutputs<'adamw'> {
  const { lr, beta1, beta2, eps, weightDecay, step } = params;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2 = 1 - Math.pow(beta2, step);
  const decay = 1 - lr * weightDecay;
  const P = param.data;
  const G = grad.data;
  const M = m.data;
  const Vd = v.data;
  for (let i = 0; i < P.length; i++) {
    const g = G[i]!;
    const mi = beta1 * M[i]! + (1 - beta1) * g;
    const vi = beta2 * Vd[i]! + (1 - beta2) * g * g;
    M[i] = mi;
    Vd[i] = vi;
    P[i] = P[i]! * decay - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps);
  }
  return [];
}

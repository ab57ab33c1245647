// Reference losses: cross-entropy against token targets and forward KL divergence against a teacher, per row.
// Shape legend: N rows (B·T), V vocabulary.
// Both use a max-shifted log-sum-exp, so logits of any finite magnitude give finite losses and gradients.
// A NaN logit makes its row's loss and gradient NaN (Math.max propagates NaN); a +∞ logit makes the row's
// log-sum-exp exp(∞ − ∞) = NaN rather than +∞: either way the row is non-finite and the jobs stop on it.
// Reductions over rows (mean, masking weights) belong to the caller, which passes dloss (N) to the backward.
// The backward kernels return fresh gradients (nothing accumulates in place).

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** log Σ_v exp(x[off + v]/τ) over one row of length V, shifted by the row max. */
function logSumExp(x: ArrayLike<number>, off: number, V: number, invTau: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, x[off + v]! * invTau);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(x[off + v]! * invTau - max);
  return max + Math.log(sum);
}

/** loss[n] = log Σ_v exp(logits[n, v]) − logits[n, targets[n]], and 0 where targets[n] < 0 (ignored).
 *  logits (N, V) → (N). */
export function crossEntropy(
  [logits]: OpInputs<'crossEntropy'>,
  { targets }: OpParams<'crossEntropy'>,
): OpOutputs<'crossEntropy'> {
  const [N, V] = logits.shape as [number, number];
  const out = Tensor.zeros([N], logits.dtype);
  const L = logits.data;
  for (let n = 0; n < N; n++) {
    const tgt = targets[n]!;
    if (tgt < 0) continue;
    out.data[n] = logSumExp(L, n * V, V, 1) - L[n * V + tgt]!;
  }
  return [out];
}

/** dlogits[n, v] = dloss[n]·(softmax(logits[n])_v − [v = targets[n]]), and 0 on ignored rows.
 *  logits (N, V), dloss (N) → (N, V). */
export function crossEntropyBackward(
  [logits, dloss]: OpInputs<'crossEntropyBackward'>,
  { targets }: OpParams<'crossEntropyBackward'>,
): OpOutputs<'crossEntropyBackward'> {
  const [N, V] = logits.shape as [number, number];
  const out = Tensor.zeros([N, V], logits.dtype);
  const L = logits.data;
  const G = out.data;
  for (let n = 0; n < N; n++) {
    const tgt = targets[n]!;
    if (tgt < 0) continue;
    const off = n * V;
    const lse = logSumExp(L, off, V, 1);
    const dl = dloss.data[n]!;
    for (let v = 0; v < V; v++) G[off + v] = dl * Math.exp(L[off + v]! - lse);
    G[off + tgt] = G[off + tgt]! - dl;
  }
  return [out];
}

/** With p_s = softmax(student[n]/τ), p_t = softmax(teacher[n]/τ):
 *    loss[n] = KL(p_t ‖ p_s) = Σ_v p_t,v·(log p_t,v − log p_s,v).
 *  No τ² factor (the caller scales if it wants Hinton's convention). student (N, V), teacher (N, V) → (N). */
export function klDiv([student, teacher]: OpInputs<'klDiv'>, { temperature }: OpParams<'klDiv'>): OpOutputs<'klDiv'> {
  const [N, V] = student.shape as [number, number];
  const inv = 1 / temperature;
  const out = Tensor.zeros([N], student.dtype);
  const Sd = student.data;
  const Td = teacher.data;
  for (let n = 0; n < N; n++) {
    const off = n * V;
    const lseS = logSumExp(Sd, off, V, inv);
    const lseT = logSumExp(Td, off, V, inv);
    let kl = 0;
    for (let v = 0; v < V; v++) {
      // Log-probabilities come from the shifted logits, never log(p), so a p_t that underflows to 0 gives
      // 0·(finite) = 0 rather than 0·(−∞) = NaN.
      const logPt = Td[off + v]! * inv - lseT;
      const logPs = Sd[off + v]! * inv - lseS;
      kl += Math.exp(logPt) * (logPt - logPs);
    }
    out.data[n] = kl;
  }
  return [out];
}

/** dstudent[n, v] = dloss[n]·(p_s,v − p_t,v)/τ.  student (N, V), teacher (N, V), dloss (N) → (N, V). */
export function klDivBackward(
  [student, teacher, dloss]: OpInputs<'klDivBackward'>,
  { temperature }: OpParams<'klDivBackward'>,
): OpOutputs<'klDivBackward'> {
  const [N, V] = student.shape as [number, number];
  const inv = 1 / temperature;
  const out = Tensor.zeros([N, V], student.dtype);
  const Sd = student.data;
  const Td = teacher.data;
  const G = out.data;
  for (let n = 0; n < N; n++) {
    const off = n * V;
    const lseS = logSumExp(Sd, off, V, inv);
    const lseT = logSumExp(Td, off, V, inv);
    const c = dloss.data[n]! * inv;
    for (let v = 0; v < V; v++) {
      G[off + v] = c * (Math.exp(Sd[off + v]! * inv - lseS) - Math.exp(Td[off + v]! * inv - lseT));
    }
  }
  return [out];
}

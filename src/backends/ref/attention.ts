// Reference causal softmax attention with grouped KV heads, forward and backward.
// Shape legend: B batch, T query positions, S key positions (cache capacity), H query heads, Hkv kv heads,
// Dk query/key head dim, Dvs stored value dim, Dv = vDim value columns read, L = kvLen key rows read.
// Query head h reads kv head g(h) = floor(h·Hkv/H) (GQA; H = Hkv is MHA, Hkv = 1 is MQA).
// Query t sits at key position qOffset + t and sees keys j ≤ qOffset + t with j < L.
// The forward returns lse = log Σ_j exp(s_j) so the backward rebuilds the probabilities without a second max pass
// (flash-attention style). The backward returns fresh gradients; dk and dv sum over the query heads of a group.
// Non-finite values (the specification the other backends are held to by test/conformance.test.ts): the formulas are
// evaluated as written in IEEE float64. A NaN score is skipped by the max test but enters Σ exp(s − max), so the
// whole row (o and lse) is NaN; a +∞ score gives exp(∞ − ∞) = NaN likewise (as torch.softmax does); a row whose
// visible scores are all −∞ is NaN (0/0); every visible key adds p·v, so p = 0 against v = ±∞ gives NaN.

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** scores[j] = scale·q·k[row0 + j, g] for j < n (q at qOff, keys (·, Hkv, Dk) from row row0); returns their max
 *  (a NaN score is skipped by the max test and left for the sum to spread, as the header says). */
function scoreRow(
  Q: ArrayLike<number>, qOff: number, K: ArrayLike<number>, row0: number, Hkv: number, g: number, Dk: number, scale: number, n: number,
  scores: Float64Array,
): number {
  let max = -Infinity;
  for (let j = 0; j < n; j++) {
    const kOff = ((row0 + j) * Hkv + g) * Dk;
    let dot = 0;
    for (let d = 0; d < Dk; d++) dot += Q[qOff + d]! * K[kOff + d]!;
    const s = scale * dot;
    scores[j] = s;
    if (s > max) max = s;
  }
  return max;
}

/** s_j = scale·q[b,t,h]·k[b,j,g(h)] for visible j;  lse[b,h,t] = log Σ_j exp(s_j);
 *  o[b,t,h,:] = Σ_j exp(s_j − lse)·v[b,j,g(h),:vDim].
 *  q (B, T, H, Dk), k (B, S, Hkv, Dk), v (B, S, Hkv, Dvs) → o (B, T, H, vDim), lse (B, H, T). */
export function attention([q, k, v]: OpInputs<'attention'>, params: OpParams<'attention'>): OpOutputs<'attention'> {
  const { scale, qOffset, kvLen, vDim } = params;
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const S = k.dim(1);
  const Hkv = k.dim(2);
  const Dvs = v.dim(3);
  const o = Tensor.zeros([B, T, H, vDim], q.dtype);
  const lse = Tensor.zeros([B, H, T], q.dtype);
  const Q = q.data;
  const K = k.data;
  const Vd = v.data;
  const O = o.data;
  const scores = new Float64Array(kvLen);
  const acc = new Float64Array(vDim);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor((h * Hkv) / H);
      for (let t = 0; t < T; t++) {
        const nVis = Math.min(qOffset + t + 1, kvLen);
        const qOff = ((b * T + t) * H + h) * Dk;
        const max = scoreRow(Q, qOff, K, b * S, Hkv, g, Dk, scale, nVis, scores);
        // Subtracting the max keeps exp in range for any score magnitude.
        let sum = 0;
        for (let j = 0; j < nVis; j++) sum += Math.exp(scores[j]! - max);
        const l = max + Math.log(sum);
        lse.data[(b * H + h) * T + t] = l;
        acc.fill(0);
        for (let j = 0; j < nVis; j++) {
          const p = Math.exp(scores[j]! - l);
          const vOff = ((b * S + j) * Hkv + g) * Dvs;
          for (let d = 0; d < vDim; d++) acc[d] = acc[d]! + p * Vd[vOff + d]!;
        }
        O.set(acc, ((b * T + t) * H + h) * vDim);
      }
    }
  }
  return [o, lse];
}

/** With P_j = exp(s_j − lse) (visible j), Δ = dout·o, dP_j = dout·v_j and dS_j = P_j·(dP_j − Δ):
 *    dq = scale·Σ_j dS_j·k_j,   dk_j += scale·dS_j·q,   dv_j += P_j·dout   (summed over the heads of a kv group).
 *  dout (B, T, H, Dv), q (B, T, H, Dk), k (B, S, Hkv, Dk), v (B, S, Hkv, Dv), o (B, T, H, Dv), lse (B, H, T)
 *  → dq (B, T, H, Dk), dk (B, S, Hkv, Dk), dv (B, S, Hkv, Dv). All S key rows and all Dv value columns are live. */
export function attentionBackward(
  [dout, q, k, v, o, lse]: OpInputs<'attentionBackward'>,
  { scale, qOffset }: OpParams<'attentionBackward'>,
): OpOutputs<'attentionBackward'> {
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const S = k.dim(1);
  const Hkv = k.dim(2);
  const Dv = v.dim(3);
  const Q = q.data;
  const K = k.data;
  const Vd = v.data;
  const DO = dout.data;
  const Od = o.data;
  // Float64 accumulators: dk and dv gather contributions from many queries and heads.
  const dq = new Float64Array(q.size);
  const dk = new Float64Array(k.size);
  const dv = new Float64Array(v.size);
  const probs = new Float64Array(S);
  const dS = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor((h * Hkv) / H);
      for (let t = 0; t < T; t++) {
        const nVis = Math.min(qOffset + t + 1, S);
        const qOff = ((b * T + t) * H + h) * Dk;
        const oOff = ((b * T + t) * H + h) * Dv;
        const l = lse.data[(b * H + h) * T + t]!;
        let delta = 0;
        for (let d = 0; d < Dv; d++) delta += DO[oOff + d]! * Od[oOff + d]!;
        for (let j = 0; j < nVis; j++) {
          const kOff = ((b * S + j) * Hkv + g) * Dk;
          const vOff = ((b * S + j) * Hkv + g) * Dv;
          let dot = 0;
          for (let d = 0; d < Dk; d++) dot += Q[qOff + d]! * K[kOff + d]!;
          const p = Math.exp(scale * dot - l);
          let dp = 0;
          for (let d = 0; d < Dv; d++) dp += DO[oOff + d]! * Vd[vOff + d]!;
          probs[j] = p;
          dS[j] = p * (dp - delta);
        }
        for (let j = 0; j < nVis; j++) {
          const kOff = ((b * S + j) * Hkv + g) * Dk;
          const vOff = ((b * S + j) * Hkv + g) * Dv;
          const ds = scale * dS[j]!;
          const p = probs[j]!;
          for (let d = 0; d < Dk; d++) {
            dq[qOff + d] = dq[qOff + d]! + ds * K[kOff + d]!;
            dk[kOff + d] = dk[kOff + d]! + ds * Q[qOff + d]!;
          }
          for (let d = 0; d < Dv; d++) dv[vOff + d] = dv[vOff + d]! + p * DO[oOff + d]!;
        }
      }
    }
  }
  const dqT = Tensor.zeros(q.shape, dout.dtype);
  const dkT = Tensor.zeros(k.shape, dout.dtype);
  const dvT = Tensor.zeros(v.shape, dout.dtype);
  dqT.data.set(dq);
  dkT.data.set(dk);
  dvT.data.set(dv);
  return [dqT, dkT, dvT];
}

/** dist[h, Δ] = Σ_b Σ_t p[b,h,t,qOffset+t−Δ], p the causal softmax of s_j = scale·q[b,t,h]·k[b,j,g(h)] over j ≤ qOffset + t
 *  (the same formula and non-finite behaviour as attention's probabilities).
 *  q (B, T, H, Dk), k (B, S, Hkv, Dk) → dist (H, S). */
export function attentionDistance([q, k]: OpInputs<'attentionDistance'>, { scale, qOffset }: OpParams<'attentionDistance'>): OpOutputs<'attentionDistance'> {
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const S = k.dim(1);
  const Hkv = k.dim(2);
  const dist = Tensor.zeros([H, S], q.dtype);
  const Q = q.data;
  const K = k.data;
  const out = dist.data;
  const scores = new Float64Array(S);
  const acc = new Float64Array(S);
  for (let h = 0; h < H; h++) {
    const g = Math.floor((h * Hkv) / H);
    acc.fill(0);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const last = qOffset + t;
        const qOff = ((b * T + t) * H + h) * Dk;
        const max = scoreRow(Q, qOff, K, b * S, Hkv, g, Dk, scale, last + 1, scores);
        let z = 0;
        for (let j = 0; j <= last; j++) z += scores[j] = Math.exp(scores[j]! - max);
        for (let j = 0; j <= last; j++) acc[last - j] = acc[last - j]! + scores[j]! / z;
      }
    }
    for (let d = 0; d < S; d++) out[h * S + d] = acc[d]!;
  }
  return [dist];
}

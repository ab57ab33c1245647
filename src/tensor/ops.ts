// The op set every backend implements: one typed list, a params interface per op (STYLE.md item 2).
// Shape legend: B batch, T query positions, S key positions, H query heads, Hkv kv heads, D / Dk / Dv head dims,
// N rows (B·T), V vocabulary, C model width.
// Every op is pure (returns fresh outputs) except those marked "in place", which write into their first input.

import type { Tensor } from './tensor.js';

export type RopePairing = 'half' | 'adjacent';

export interface OpSpecs {
  /** a (…, M, K) · b (…, K, N) → (…, M, N); transA/transB read a as (…, K, M) / b as (…, N, K).
   *  b may have no batch axes (a weight shared by the batch). */
  matmul: { inputs: [a: Tensor, b: Tensor]; params: { transA: boolean; transB: boolean }; outputs: [Tensor] };
  /** Elementwise with numpy broadcasting. */
  add: { inputs: [a: Tensor, b: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  sub: { inputs: [a: Tensor, b: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  mul: { inputs: [a: Tensor, b: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  /** y = a·x + b (scalars a, b). */
  affine: { inputs: [x: Tensor]; params: { a: number; b: number }; outputs: [Tensor] };
  /** Sum over the broadcast axes so the result has `shape` (the backward of broadcasting). */
  sumTo: { inputs: [x: Tensor]; params: { shape: readonly number[] }; outputs: [Tensor] };
  /** Σ x² over all elements → shape []. */
  sumSquares: { inputs: [x: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  /** Axis permutation (a copy). */
  permute: { inputs: [x: Tensor]; params: { perm: readonly number[] }; outputs: [Tensor] };
  /** x (…, D) → (…, len): the columns [start, start+len) of the last axis. */
  narrow: { inputs: [x: Tensor]; params: { start: number; len: number }; outputs: [Tensor] };
  /** x (…, len) → (…, total), x placed at column `start`, zeros elsewhere (the backward of narrow). */
  pad: { inputs: [x: Tensor]; params: { start: number; total: number }; outputs: [Tensor] };
  /** a (…, Da), b (…, Db) → (…, Da+Db) along the last axis. */
  concat: { inputs: [a: Tensor, b: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  /** x (N, C), w (C) → y = x / rms(x) · w, rstd (N) = 1/sqrt(mean(x²)+eps). */
  rmsnorm: { inputs: [x: Tensor, w: Tensor]; params: { eps: number }; outputs: [y: Tensor, rstd: Tensor] };
  /** Gradients of rmsnorm: dx (N, C) and dw (C). */
  rmsnormBackward: {
    inputs: [dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor];
    params: Record<string, never>;
    outputs: [dx: Tensor, dw: Tensor];
  };
  /** Rotary embedding on x (B, T, H, D): columns [start, start+2·invFreq.length) of each head rotate by
   *  angle positions[t]·invFreq[i]. pairing 'half' pairs (j, j+n) inside the slice, 'adjacent' pairs (2j, 2j+1).
   *  inverse rotates by the negative angle (the backward). */
  rope: {
    inputs: [x: Tensor];
    params: { start: number; invFreq: Float64Array; positions: Int32Array; pairing: RopePairing; inverse: boolean };
    outputs: [Tensor];
  };
  /** Causal softmax attention. q (B, T, H, Dk), k (B, S, Hkv, Dk), v (B, S, Hkv, Dvs); query head h reads kv head
   *  floor(h·Hkv/H). Only the first kvLen key rows are read and the first vDim columns of v. Query t sits at key
   *  position qOffset + t and sees keys ≤ that position. o (B, T, H, vDim), lse (B, H, T) = log Σ exp(scores). */
  attention: {
    inputs: [q: Tensor, k: Tensor, v: Tensor];
    params: { scale: number; qOffset: number; kvLen: number; vDim: number };
    outputs: [o: Tensor, lse: Tensor];
  };
  /** Gradients of attention (vDim = Dvs, kvLen = S, as in training). */
  attentionBackward: {
    inputs: [dout: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor];
    params: { scale: number; qOffset: number };
    outputs: [dq: Tensor, dk: Tensor, dv: Tensor];
  };
  /** The causal softmax attention's mass by query−key distance (calibration statistics; no backward). With
   *  p[b,h,t,j] = softmax_j(scale·q[b,t,h]·k[b,j,g(h)]) over the keys j ≤ qOffset + t (query t at position qOffset + t),
   *  dist[h, Δ] = Σ_b Σ_t p[b,h,t,qOffset+t−Δ]. q (B, T, H, Dk), k (B, S, Hkv, Dk), qOffset + T ≤ S → dist (H, S). */
  attentionDistance: { inputs: [q: Tensor, k: Tensor]; params: { scale: number; qOffset: number }; outputs: [Tensor] };
  /** y = silu(g) · u. */
  swiglu: { inputs: [g: Tensor, u: Tensor]; params: Record<string, never>; outputs: [Tensor] };
  swigluBackward: { inputs: [dy: Tensor, g: Tensor, u: Tensor]; params: Record<string, never>; outputs: [dg: Tensor, du: Tensor] };
  /** table (V, C) gathered at ids → (ids.length, C). */
  embedding: { inputs: [table: Tensor]; params: { ids: Int32Array }; outputs: [Tensor] };
  /** Scatter-add of dy (N, C) into a zero (V, C) table at ids (the backward of embedding). */
  embeddingBackward: { inputs: [dy: Tensor]; params: { ids: Int32Array; vocab: number }; outputs: [Tensor] };
  /** Per-row −log softmax(logits)[target]; rows with target < 0 give 0. logits (N, V) → (N). */
  crossEntropy: { inputs: [logits: Tensor]; params: { targets: Int32Array }; outputs: [Tensor] };
  /** dlogits = dloss[n]·(softmax − onehot) per row (0 for ignored rows). */
  crossEntropyBackward: {
    inputs: [logits: Tensor, dloss: Tensor];
    params: { targets: Int32Array };
    outputs: [Tensor];
  };
  /** Per-row forward KL(p_teacher ‖ p_student) at temperature τ: p = softmax(logits/τ). (N, V) → (N). */
  klDiv: { inputs: [student: Tensor, teacher: Tensor]; params: { temperature: number }; outputs: [Tensor] };
  /** dstudent = dloss[n]·(p_s − p_t)/τ per row. */
  klDivBackward: {
    inputs: [student: Tensor, teacher: Tensor, dloss: Tensor];
    params: { temperature: number };
    outputs: [Tensor];
  };
  /** In place: AdamW on param with grad; m, v are the moment buffers. step counts from 1. */
  adamw: {
    inputs: [param: Tensor, grad: Tensor, m: Tensor, v: Tensor];
    params: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number };
    outputs: [];
  };
  /** In place (cache writes): src is cut into `blocks` (default 1) equal contiguous pieces; piece i goes to dst's flat
   *  elements starting at offset + i·stride (one call writes the new rows of every batch row). */
  writeAt: { inputs: [dst: Tensor, src: Tensor]; params: { offset: number; blocks?: number; stride?: number }; outputs: [] };
}

export type OpName = keyof OpSpecs;
export type OpInputs<O extends OpName> = OpSpecs[O]['inputs'];
export type OpParams<O extends OpName> = OpSpecs[O]['params'];
export type OpOutputs<O extends OpName> = OpSpecs[O]['outputs'];

/** The op list as a value, so tables over ops (kernels, tests) can be checked for completeness. */
export const OP_NAMES = [
  'matmul', 'add', 'sub', 'mul', 'affine', 'sumTo', 'sumSquares', 'permute', 'narrow', 'pad', 'concat',
  'rmsnorm', 'rmsnormBackward', 'rope', 'attention', 'attentionBackward', 'swiglu', 'swigluBackward',
  'embedding', 'embeddingBackward', 'crossEntropy', 'crossEntropyBackward', 'klDiv', 'klDivBackward',
  // attentionDistance last: the conformance seeds (1000·(index + 1)) of the ops before it stay as they were.
  'adamw', 'writeAt', 'attentionDistance',
] as const satisfies readonly OpName[];

// Compile-time check that OP_NAMES lists every op exactly (a missing one is a type error here).
type Missing = Exclude<OpName, (typeof OP_NAMES)[number]>;
const _allOpsListed: Missing extends never ? true : Missing = true;
void _allOpsListed;

/** Implementations of every op for one backend: a missing entry is a compile error. */
export type Kernels = { [O in OpName]: (inputs: OpInputs<O>, params: OpParams<O>) => OpOutputs<O> };

/** Broadcast shape of two shapes (numpy rules), or throws. */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`cannot broadcast shapes [${a.join(', ')}] and [${b.join(', ')}]`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

// Reference layout ops: permute, narrow, pad, concat (fresh copies) and writeAt (in place, for cache writes).
// Shape legend: "…" leading axes (flattened into R rows below), D / len / total / Da / Db sizes of the last axis.
// Backward pairs: permute ↔ permute by the inverse permutation, narrow ↔ pad, concat ↔ two narrows.
// No arithmetic happens here, so the dtype of the first input is kept and values are copied exactly.

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** y[i_0, …, i_{n−1}] = x[j] where j_{perm[a]} = i_a, so y.shape[a] = x.shape[perm[a]]
 *  (a copy, like numpy.transpose). */
export function permute([x]: OpInputs<'permute'>, { perm }: OpParams<'permute'>): OpOutputs<'permute'> {
  const rank = x.rank;
  const xStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    xStrides[i] = s;
    s *= x.shape[i]!;
  }
  const shape = perm.map((p) => x.shape[p]!);
  // Input stride of each output axis: walking output axis a moves along input axis perm[a].
  const st = perm.map((p) => xStrides[p]!);
  const out = Tensor.zeros(shape, x.dtype);
  const X = x.data;
  const O = out.data;
  const idx = new Array<number>(rank).fill(0);
  let ix = 0;
  for (let i = 0; i < O.length; i++) {
    O[i] = X[ix]!;
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]!++;
      ix += st[ax]!;
      if (idx[ax]! < shape[ax]!) break;
      ix -= st[ax]! * shape[ax]!;
      idx[ax] = 0;
    }
  }
  return [out];
}

/** y[…, j] = x[…, start + j] for j < len: x (…, D) → (…, len). */
export function narrow([x]: OpInputs<'narrow'>, { start, len }: OpParams<'narrow'>): OpOutputs<'narrow'> {
  const D = x.dim(-1);
  const rows = D === 0 ? 0 : x.size / D;
  const out = Tensor.zeros([...x.shape.slice(0, -1), len], x.dtype);
  for (let r = 0; r < rows; r++) out.data.set(x.data.subarray(r * D + start, r * D + start + len), r * len);
  return [out];
}

/** y[…, start + j] = x[…, j], zeros elsewhere: x (…, len) → (…, total). The adjoint of narrow. */
export function pad([x]: OpInputs<'pad'>, { start, total }: OpParams<'pad'>): OpOutputs<'pad'> {
  const len = x.dim(-1);
  const out = Tensor.zeros([...x.shape.slice(0, -1), total], x.dtype);
  const rows = total === 0 ? 0 : out.size / total;
  for (let r = 0; r < rows; r++) out.data.set(x.data.subarray(r * len, (r + 1) * len), r * total + start);
  return [out];
}

/** y[…, :Da] = a, y[…, Da:] = b: a (…, Da), b (…, Db) → (…, Da+Db). */
export function concat([a, b]: OpInputs<'concat'>, _p: OpParams<'concat'>): OpOutputs<'concat'> {
  const Da = a.dim(-1);
  const Db = b.dim(-1);
  const Dt = Da + Db;
  const out = Tensor.zeros([...a.shape.slice(0, -1), Dt], a.dtype);
  const rows = Dt === 0 ? 0 : out.size / Dt;
  for (let r = 0; r < rows; r++) {
    out.data.set(a.data.subarray(r * Da, (r + 1) * Da), r * Dt);
    out.data.set(b.data.subarray(r * Db, (r + 1) * Db), r * Dt + Da);
  }
  return [out];
}

/** In place: dst.flat[offset + i] = src.flat[i] for i < src.size (a KV-cache write). Returns no tensors. */
export function writeAt([dst, src]: OpInputs<'writeAt'>, { offset, blocks = 1, stride = 0 }: OpParams<'writeAt'>): OpOutputs<'writeAt'> {
  const n = src.size / blocks;
  for (let i = 0; i < blocks; i++) dst.data.set(src.data.subarray(i * n, (i + 1) * n), offset + i * stride);
  return [];
}

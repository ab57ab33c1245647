// Reference elementwise ops: add, sub, mul with numpy broadcasting; affine; sumTo (the backward of broadcasting);
// sumSquares. Shapes are arbitrary ("…"); broadcasting aligns trailing axes as numpy does.
// Backward rules are compositions of these ops (d(a·b)/da = sumTo(dy·b, a.shape)), so there are no extra kernels.
// Every op returns a fresh tensor of the first input's dtype; sums accumulate in float64 (JS numbers).

import { Tensor } from '../../tensor/tensor.js';
import { broadcastShape } from '../../tensor/ops.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** Row-major strides of `shape` aligned to rank `rank` (leading axes added), 0 on axes of size 1 so a broadcast
 *  input reads the same element along them. */
export function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    strides[rank - shape.length + i] = d === 1 ? 0 : s;
    s *= d;
  }
  return strides;
}

type BinaryFn = (x: number, y: number) => number;

/** out[idx] = f(a[idx mod a.shape], b[idx mod b.shape]) over the broadcast shape. */
function broadcastBinary(a: Tensor, b: Tensor, f: BinaryFn): Tensor {
  const shape = broadcastShape(a.shape, b.shape);
  const out = Tensor.zeros(shape, a.dtype);
  const A = a.data;
  const B = b.data;
  const O = out.data;
  const n = out.size;
  if (a.size === n && b.size === n) {
    // Same shape (the common case): no index bookkeeping.
    for (let i = 0; i < n; i++) O[i] = f(A[i]!, B[i]!);
    return out;
  }
  const rank = shape.length;
  const sa = broadcastStrides(a.shape, rank);
  const sb = broadcastStrides(b.shape, rank);
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < n; i++) {
    O[i] = f(A[ia]!, B[ib]!);
    // Odometer increment of the multi-index, moving both input offsets by their strides.
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]!++;
      ia += sa[ax]!;
      ib += sb[ax]!;
      if (idx[ax]! < shape[ax]!) break;
      ia -= sa[ax]! * shape[ax]!;
      ib -= sb[ax]! * shape[ax]!;
      idx[ax] = 0;
    }
  }
  return out;
}

/** y = a + b, shapes broadcast (numpy rules) → broadcastShape(a, b). */
export function add([a, b]: OpInputs<'add'>, _p: OpParams<'add'>): OpOutputs<'add'> {
  return [broadcastBinary(a, b, (x, y) => x + y)];
}

/** y = a − b, shapes broadcast (numpy rules) → broadcastShape(a, b). */
export function sub([a, b]: OpInputs<'sub'>, _p: OpParams<'sub'>): OpOutputs<'sub'> {
  return [broadcastBinary(a, b, (x, y) => x - y)];
}

/** y = a ⊙ b, shapes broadcast (numpy rules) → broadcastShape(a, b). */
export function mul([a, b]: OpInputs<'mul'>, _p: OpParams<'mul'>): OpOutputs<'mul'> {
  return [broadcastBinary(a, b, (x, y) => x * y)];
}

/** y = a·x + b elementwise (scalars a, b); same shape as x. */
export function affine([x]: OpInputs<'affine'>, { a, b }: OpParams<'affine'>): OpOutputs<'affine'> {
  const out = Tensor.zeros(x.shape, x.dtype);
  const X = x.data;
  const O = out.data;
  for (let i = 0; i < X.length; i++) O[i] = a * X[i]! + b;
  return [out];
}

/** y[j] = Σ_{i ↦ j} x[i]: sums x over the axes along which `shape` was broadcast to x.shape (missing leading axes
 *  and axes of size 1), so y has exactly `shape`. The adjoint of broadcasting `shape` → x.shape. */
export function sumTo([x]: OpInputs<'sumTo'>, { shape }: OpParams<'sumTo'>): OpOutputs<'sumTo'> {
  const out = Tensor.zeros(shape, x.dtype);
  const X = x.data;
  const n = X.length;
  // Accumulate in a Float64Array so an f32 output still gets a float64 sum.
  const acc = new Float64Array(out.size);
  const rank = x.rank;
  const st = broadcastStrides(shape, rank);
  const idx = new Array<number>(rank).fill(0);
  let it = 0;
  for (let i = 0; i < n; i++) {
    acc[it] = acc[it]! + X[i]!;
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]!++;
      it += st[ax]!;
      if (idx[ax]! < x.shape[ax]!) break;
      it -= st[ax]! * x.shape[ax]!;
      idx[ax] = 0;
    }
  }
  out.data.set(acc);
  return [out];
}

/** s = Σ_i x_i² over all elements → shape [] (a scalar tensor). */
export function sumSquares([x]: OpInputs<'sumSquares'>, _p: OpParams<'sumSquares'>): OpOutputs<'sumSquares'> {
  const X = x.data;
  let s = 0;
  for (let i = 0; i < X.length; i++) s += X[i]! * X[i]!;
  const out = Tensor.zeros([], x.dtype);
  out.data[0] = s;
  return [out];
}

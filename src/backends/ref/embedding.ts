// Reference token embedding: gather (forward) and scatter-add (backward).
// Shape legend: V vocabulary, C model width, N = ids.length rows.
// The backward builds a fresh zero (V, C) table and adds every row of dy into it (repeated ids accumulate).

import { Tensor } from '../../tensor/tensor.js';
import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** y[n, :] = table[ids[n], :].  table (V, C) → (N, C). ids are checked to lie in [0, V) by validate.ts.
 *  A bf16/f16 table gives f32 rows (widened exactly, one row at a time); f32/f64 tables keep their dtype. */
export function embedding([table]: OpInputs<'embedding'>, { ids }: OpParams<'embedding'>): OpOutputs<'embedding'> {
  const C = table.dim(1);
  const half = table.dtype === 'bf16' || table.dtype === 'f16';
  const out = Tensor.zeros([ids.length, C], half ? 'f32' : table.dtype);
  const dst = out.data;
  if (half) {
    const bits = table.halfBits();
    for (let n = 0; n < ids.length; n++) {
      const id = ids[n]!;
      const row = new Tensor([C], bits.slice(id * C, (id + 1) * C), table.dtype);
      const vals = row.toHost();
      row.dispose();
      dst.set(vals, n * C);
    }
    return [out];
  }
  const src = table.data;
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n]!;
    dst.set(src.subarray(id * C, (id + 1) * C), n * C);
  }
  return [out];
}

/** dtable[v, :] = Σ_{n : ids[n] = v} dy[n, :].  dy (N, C) → (vocab, C). */
export function embeddingBackward(
  [dy]: OpInputs<'embeddingBackward'>,
  { ids, vocab }: OpParams<'embeddingBackward'>,
): OpOutputs<'embeddingBackward'> {
  const C = dy.dim(1);
  // Float64 accumulator: a frequent token sums many rows.
  const acc = new Float64Array(vocab * C);
  const DY = dy.data;
  for (let n = 0; n < ids.length; n++) {
    const dst = ids[n]! * C;
    const src = n * C;
    for (let c = 0; c < C; c++) acc[dst + c] = acc[dst + c]! + DY[src + c]!;
  }
  const out = Tensor.zeros([vocab, C], dy.dtype);
  out.data.set(acc);
  return [out];
}

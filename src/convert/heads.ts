// Row bookkeeping inside attention heads: which rows of a projection hold rope pair j, per pairing convention,
// and plain row-major f64 matrix helpers used by the converter.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, g = H/Hkv group size.

import type { RopePairing } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';

/** The two rows (real, imaginary) of rope pair j inside one head of `dim` rows. */
export function pairRows(pairing: RopePairing, dim: number, j: number): [number, number] {
  return pairing === 'half' ? [j, j + dim / 2] : [2 * j, 2 * j + 1];
}

/** The kv head that query head h reads. */
export function kvHeadOf(h: number, H: number, Hkv: number): number {
  return Math.floor((h * Hkv) / H);
}

/** A tensor's values as a fresh f64 array. */
export function f64(t: Tensor): Float64Array {
  return Float64Array.from(t.toHost());
}

/** Copy row `src` of a (·, C) matrix into row `dst` of another, times `scale`, added to what is there. */
export function addRow(dstM: Float64Array, dst: number, srcM: Float64Array, src: number, C: number, scale: number): void {
  const o = dst * C;
  const s = src * C;
  for (let c = 0; c < C; c++) dstM[o + c]! += scale * srcM[s + c]!;
}

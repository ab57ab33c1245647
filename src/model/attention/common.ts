// Helpers every attention kind's decode path shares.

import type { Tensor } from '../../tensor/tensor.js';
import type { Model } from '../model.js';

/** Append rows (B, T, …) to a cache buffer (B, Smax, …) at position P: one strided write for all batch rows. */
export function writeCache(model: Model, buf: Tensor, rows: Tensor, B: number, T: number, P: number): void {
  const per = rows.size / (B * T);
  model.be.run('writeAt', [buf, rows], { offset: P * per, blocks: B, stride: buf.dim(1) * per });
}

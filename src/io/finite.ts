// Finite-value checks for weights at load time (issue 11: no silent wrong numbers). A NaN or ±∞ in one weight
// poisons every token that touches it; found here, before anything runs, the message can name the file, the tensor
// and the element instead of a perplexity that is NaN (or, worse, plausible) minutes later.
// One pass over the decoded values: x − x is 0 for every finite x and NaN for NaN and ±∞.

import { formatError } from '../errors.js';

/** The index of the first NaN/+∞/−∞ in `data`, or −1 when every value is finite. */
export function firstNonFinite(data: ArrayLike<number>): number {
  const n = data.length;
  for (let i = 0; i < n; i++) {
    const x = data[i]!;
    if (x - x !== 0) return i;
  }
  return -1;
}

/** 'NaN', '+Inf' or '-Inf' for a non-finite value (as messages print it). */
export function nonFiniteName(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x > 0 ? '+Inf' : '-Inf';
}

/** Row-major flat index → "[i, j, …]" for `shape` (the flat index itself for a scalar). */
export function elementIndex(flat: number, shape: readonly number[]): string {
  if (shape.length === 0) return `[${flat}]`;
  const idx: number[] = new Array<number>(shape.length);
  let r = flat;
  for (let a = shape.length - 1; a >= 0; a--) {
    const d = shape[a]!;
    idx[a] = d === 0 ? 0 : r % d;
    r = d === 0 ? 0 : Math.floor(r / d);
  }
  return `[${idx.join(', ')}]`;
}

/**
 * Throws a UserError "FILE: tensor NAME: NaN at element [i, j] (flat index k) of shape [..]; weights must be finite"
 * when `data` holds a non-finite value. `name` may carry the format's own name as well (llama2.c blocks).
 */
export function assertFiniteWeights(file: string, name: string, shape: readonly number[], data: ArrayLike<number>): void {
  const i = firstNonFinite(data);
  if (i < 0) return;
  throw formatError(
    file,
    `tensor ${name}`,
    `${nonFiniteName(data[i]!)} at element ${elementIndex(i, shape)} (flat index ${i}) of shape [${shape.join(', ')}]; ` +
      'weights must be finite (the checkpoint is corrupt or was saved from a diverged run)',
  );
}

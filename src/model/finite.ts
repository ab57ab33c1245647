// Run-time stops on non-finite numbers (issue 11): a job that reads logits, losses or statistics checks them before
// it reduces them to a reported number, and stops with one line that says what became non-finite and where, instead
// of printing NaN (or a plausible-looking number a kernel made from a swallowed NaN).
// Weights are checked at load (io/finite.ts), so a non-finite activation here means the forward pass overflowed
// float32 (a weight or an activation far too large) or the model was built in code from non-finite weights.

import { UserError } from '../errors.js';
import { firstNonFinite, nonFiniteName } from '../tensor/finite.js';

/** What a caller appends when activations went non-finite from a forward pass. */
export const FORWARD_HINT = 'the forward pass overflowed float32 or met a non-finite weight (rerun with {backend} ref to compare)';

/** A non-finite result: a UserError (one line, exit 1) that names the quantity. */
export class NonFiniteError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/**
 * Logits (or any per-row quantity) of shape (B, T, V) flattened: throws NonFiniteError
 * "`context`: non-finite `what` (NaN at batch row b, position t, column v); `hint`" at the first NaN/±∞.
 * `rowName(b, t)` may replace "batch row b, position t" (e.g. an eval item); V = 1 for per-token values.
 */
export function assertFiniteRows(
  context: string,
  what: string,
  data: ArrayLike<number>,
  T: number,
  V: number,
  hint: string = FORWARD_HINT,
  rowName: (b: number, t: number) => string = (b, t) => `batch row ${b}, position ${t}`,
): void {
  const i = firstNonFinite(data);
  if (i < 0) return;
  const row = Math.floor(i / V);
  const b = Math.floor(row / T);
  const t = row % T;
  const col = V > 1 ? `, column ${i % V}` : '';
  throw new NonFiniteError(`${context}: non-finite ${what} (${nonFiniteName(data[i]!)} at ${rowName(b, t)}${col}); ${hint}`);
}

/** A reported scalar (perplexity, mean KL, loss): throws NonFiniteError "`context`: `what` is NaN (`detail`)". */
export function assertFiniteValue(context: string, what: string, x: number, detail: string): void {
  if (Number.isFinite(x)) return;
  throw new NonFiniteError(`${context}: ${what} is ${nonFiniteName(x)} (${detail})`);
}

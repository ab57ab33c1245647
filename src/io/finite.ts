// Finite-value checks for weights at load time (issue 11: no silent wrong numbers). A NaN or ±∞ in one weight
// poisons every token that touches it; found here, before anything runs, the message can name the file, the tensor
// and the element instead of a perplexity that is NaN (or, worse, plausible) minutes later.

import { formatError } from '../errors.js';
import { elementIndex, firstNonFinite, nonFiniteName } from '../tensor/finite.js';

/**
 * Throws a UserError "FILE: tensor NAME: NaN at element [i, j] (flat index k) of shape [..]; weights must be finite"
 * when `data` holds a non-finite value. `name` may carry the format's own name as well (llama2.c blocks). `data` may
 * be a piece of the tensor starting at flat index `start` (a tensor read in pieces).
 */
export function assertFiniteWeights(file: string, name: string, shape: readonly number[], data: ArrayLike<number>, start = 0): void {
  const j = firstNonFinite(data);
  if (j < 0) return;
  const i = start + j;
  throw formatError(
    file,
    `tensor ${name}`,
    `${nonFiniteName(data[j]!)} at element ${elementIndex(i, shape)} (flat index ${i}) of shape [${shape.join(', ')}]; ` +
      'weights must be finite (the checkpoint is corrupt or was saved from a diverged run)',
  );
}

// Perplexity over non-overlapping windows: the token stream is cut into windows of `ctx` tokens; each window predicts
// its tokens 2..n from their prefixes inside the window (no context carried across windows), so a window of n tokens
// scores n−1 tokens. ppl = exp(Σ nll / Σ scored tokens).

import { noGrad } from '../autograd/var.js';
import type { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { FORWARD_HINT, assertFiniteRows, assertFiniteValue } from '../model/finite.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { tidy } from '../tensor/storage.js';

export interface PerplexityResult {
  perplexity: number;
  /** Scored tokens. */
  tokens: number;
  /** Mean negative log-likelihood (nats per token). */
  nll: number;
}

/** Windows of `ctx` tokens (the last may be shorter; windows of one token are dropped). */
export function windows(ids: ArrayLike<number>, ctx: number): number[][] {
  const out: number[][] = [];
  const all = Array.from(ids); // once: copying inside the loop made this O(n²/ctx)
  for (let s = 0; s < all.length; s += ctx) {
    const w = all.slice(s, s + ctx);
    if (w.length >= 2) out.push(w);
  }
  return out;
}

/** Batches of equal-length windows (up to `batch` rows): input ids and next-token targets (−1 where none). */
export function* windowBatches(ws: number[][], batch: number): Generator<{ input: Int32Array; targets: Int32Array; B: number; T: number }> {
  for (let i = 0; i < ws.length; ) {
    const T = ws[i]!.length;
    const group: number[][] = [];
    while (i < ws.length && ws[i]!.length === T && group.length < batch) group.push(ws[i++]!);
    const B = group.length;
    const input = new Int32Array(B * T);
    const targets = new Int32Array(B * T).fill(-1);
    group.forEach((w, b) => {
      for (let t = 0; t < T; t++) {
        input[b * T + t] = w[t]!;
        if (t + 1 < T) targets[b * T + t] = w[t + 1]!;
      }
    });
    yield { input, targets, B, T };
  }
}

/** Perplexity of `model` on token ids. Windows of equal length run as one batch of up to `batch` rows. */
export function perplexity(
  model: Model,
  ids: ArrayLike<number>,
  ctx: number,
  batch = 8,
  progress: ProgressSink = silentProgress,
): PerplexityResult {
  const ws = windows(ids, ctx);
  if (ws.length === 0) throw new Error('perplexity: the text holds fewer than 2 tokens');
  let nll = 0;
  let count = 0;
  let w0 = 0; // index of the batch's first window
  const V = model.config.vocabSize;
  noGrad(() => {
    for (const { input, targets, B, T } of windowBatches(ws, batch)) {
      // One batch's activations are freed when it is scored (tidy).
      tidy(() => {
        const logits = forward(model, input, B, T);
        // Stop on the first non-finite logit: a NaN must not become a perplexity (or vanish into one).
        assertFiniteRows('perplexity', 'logits', logits.value.data, T, V, FORWARD_HINT,
          (b, t) => `window ${w0 + b + 1} of ${ws.length}, position ${t}`);
        const losses = model.F.crossEntropy(logits, targets).value;
        for (let r = 0; r < losses.size; r++) nll += losses.data[r]!;
      });
      w0 += B;
      count += B * (T - 1);
      progress.tick(B * T);
    }
  });
  progress.end();
  const ppl = Math.exp(nll / count);
  // Finite logits give a finite NLL; exp of a mean NLL above ~709 nats still overflows.
  assertFiniteValue('perplexity', 'the perplexity', ppl, `mean NLL ${(nll / count).toPrecision(6)} nats per token over ${count} tokens`);
  return { perplexity: ppl, tokens: count, nll: nll / count };
}

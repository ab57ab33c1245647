// Text generation with the decode cache: prefill the prompt, then one token per step.
// Sampling: greedy at temperature 0, else softmax(logits/T) restricted to the top-p nucleus, from a seeded RNG.

import { noGrad } from '../autograd/var.js';
import { mulberry32 } from '../tensor/rng.js';
import type { Model } from './model.js';
import { KVCache } from './cache.js';
import type { CacheDtype } from './cache-dtype.js';
import { forward } from './forward.js';
import { FORWARD_HINT, assertFiniteRows } from './finite.js';
import { UserError } from '../errors.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { tidy } from '../tensor/storage.js';

export interface SampleOptions {
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  /** Token ids that end generation (not emitted). */
  stopIds?: number[];
  /** How the decode cache stores its rows (default f32). */
  cacheDtype?: CacheDtype;
  /** Called with each new token id (streaming, progress). */
  onToken?: (id: number) => void;
}

/** Pick a token from one row of logits. */
export function sampleToken(logits: ArrayLike<number>, temperature: number, topP: number, rng: () => number): number {
  const V = logits.length;
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[i]!);
  const probs = new Float64Array(V);
  let z = 0;
  for (let i = 0; i < V; i++) z += probs[i] = Math.exp((logits[i]! - max) / temperature);
  if (topP >= 1) {
    // Plain sampling from the whole distribution: no sort needed.
    let r = rng() * z;
    for (let i = 0; i < V; i++) {
      r -= probs[i]!;
      if (r <= 0) return i;
    }
    return V - 1;
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]!);
  // Smallest prefix of the sorted distribution whose mass reaches topP.
  let mass = 0;
  let n = 0;
  while (n < V && mass < topP * z) mass += probs[order[n++]!]!;
  let r = rng() * mass;
  for (let j = 0; j < n; j++) {
    r -= probs[order[j]!]!;
    if (r <= 0) return order[j]!;
  }
  return order[n - 1]!;
}

/** Continue `prompt` (non-empty ids) by up to maxTokens tokens; returns the new ids only. */
export function generate(model: Model, prompt: number[], opts: SampleOptions): number[] {
  if (prompt.length === 0) throw new Error('generate: the prompt must hold at least one token (e.g. BOS)');
  const capacity = Math.min(prompt.length + opts.maxTokens, Math.max(model.config.maxPositions, prompt.length + 1));
  const rng = mulberry32(opts.seed);
  const stop = new Set(opts.stopIds ?? []);
  const out: number[] = [];
  // The outer tidy frees the cache when generation ends; each step's tidy frees that step's activations.
  return tidy(() => noGrad(() => {
    const cache = new KVCache(model, 1, capacity, opts.cacheDtype ?? 'f32');
    const V = model.config.vocabSize;
    const step = (ids: Int32Array): number => tidy(() => {
      const logits = forward(model, ids, 1, ids.length, { cache }).value;
      const last = logits.data.subarray((logits.dim(0) - 1) * V, logits.dim(0) * V);
      // Sampling from NaN logits would still print tokens (argmax/cumulative tests skip NaN): stop instead.
      assertFiniteRows('generate', 'logits', last, 1, V, FORWARD_HINT, () => `generated token ${out.length + 1} (position ${cache.length - 1})`);
      return sampleToken(last, opts.temperature, opts.topP, rng);
    });
    let next = step(Int32Array.from(prompt));
    while (out.length < opts.maxTokens) {
      if (stop.has(next)) break;
      out.push(next);
      opts.onToken?.(next);
      if (out.length >= opts.maxTokens || cache.length >= capacity) break;
      next = step(Int32Array.of(next));
    }
    return out;
  }));
}

/** How sampleSequences draws each token: softmax(logits / temperature) restricted to the top-p nucleus (sampleToken). */
export interface SamplingRule {
  /** > 0 (0 would make every sample from BOS the same greedy sequence). */
  temperature: number;
  /** In (0, 1]; 1 samples from the whole distribution. */
  topP: number;
}

/** The model's own distribution: temperature 1, no nucleus cut. */
export const PLAIN_SAMPLING: SamplingRule = { temperature: 1, topP: 1 };

/** n sequences of `len` tokens sampled from the model (by default at temperature 1, whole distribution), `batch` at a
 *  time (batched decode). The rng per batch depends only on (seed, batch start), so the rule changes which tokens are
 *  drawn, never the random stream. */
export function sampleSequences(
  model: Model, n: number, len: number, seed: number, batch = 32, progress: ProgressSink = silentProgress, rule: SamplingRule = PLAIN_SAMPLING,
): number[][] {
  if (!(rule.temperature > 0) || !(rule.topP > 0 && rule.topP <= 1)) throw new Error(`sampleSequences: temperature must be > 0 and topP in (0, 1], got ${rule.temperature}, ${rule.topP}`);
  const bos = model.config.bosTokenId;
  if (bos === null) throw new UserError('sampling: the model has no BOS token to start samples from');
  const V = model.config.vocabSize;
  const out: number[][] = [];
  noGrad(() => {
    for (let start = 0; start < n; start += batch) tidy(() => {
      const B = Math.min(batch, n - start);
      const rng = mulberry32(seed * 7919 + start);
      const seqs = Array.from({ length: B }, () => [bos]);
      const cache = new KVCache(model, B, len);
      let ids = Int32Array.from(seqs.map((s) => s[0]!));
      for (let t = 1; t < len; t++) {
        ids = tidy(() => {
          const logits = forward(model, ids, B, 1, { cache }).value;
          assertFiniteRows('sampling', 'logits from the sampled model', logits.data, 1, V, FORWARD_HINT, (b) => `sample ${start + b + 1}, position ${t - 1}`);
          return Int32Array.from({ length: B }, (_, b) => sampleToken(logits.data.subarray(b * V, (b + 1) * V), rule.temperature, rule.topP, rng));
        });
        seqs.forEach((s, b) => s.push(ids[b]!));
      }
      out.push(...seqs);
      progress.tick(B);
    });
  });
  progress.end();
  return out;
}


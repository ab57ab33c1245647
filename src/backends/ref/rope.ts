// Reference rotary position embedding. Its backward is itself with inverse = true (a rotation's adjoint is its
// inverse), so one kernel serves both directions.
// Shape legend: B batch, T positions, H heads, D head dim, P = invFreq.length rotated pairs (2P columns from start).
// Pairings: 'half' rotates (start+j, start+P+j) (HF Llama/Qwen rotate_half), 'adjacent' rotates
// (start+2j, start+2j+1) (llama2.c, DeepSeek rope_interleave); pair j always uses invFreq[j].
// Returns a fresh tensor; columns outside the rotated slice are copied unchanged.

import type { OpInputs, OpOutputs, OpParams } from '../../tensor/ops.js';

/** For each pair (x₁, x₂) of pair index j at position p = positions[t], θ = ±p·invFreq[j] (− when inverse):
 *    y₁ = x₁·cos θ − x₂·sin θ,   y₂ = x₁·sin θ + x₂·cos θ.
 *  x (B, T, H, D) → (B, T, H, D); positions (T). */
export function rope([x]: OpInputs<'rope'>, params: OpParams<'rope'>): OpOutputs<'rope'> {
  const { start, invFreq, positions, pairing, inverse } = params;
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const P = invFreq.length;
  const out = x.clone();
  const X = x.data;
  const O = out.data;
  const sign = inverse ? -1 : 1;
  const cos = new Float64Array(P);
  const sin = new Float64Array(P);
  for (let t = 0; t < T; t++) {
    const pos = positions[t]!;
    for (let j = 0; j < P; j++) {
      const theta = sign * pos * invFreq[j]!;
      cos[j] = Math.cos(theta);
      sin[j] = Math.sin(theta);
    }
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * D + start;
        for (let j = 0; j < P; j++) {
          const i1 = pairing === 'half' ? base + j : base + 2 * j;
          const i2 = pairing === 'half' ? base + P + j : base + 2 * j + 1;
          const x1 = X[i1]!;
          const x2 = X[i2]!;
          O[i1] = x1 * cos[j]! - x2 * sin[j]!;
          O[i2] = x1 * sin[j]! + x2 * cos[j]!;
        }
      }
    }
  }
  return [out];
}

// Rope pairing for the stock engines: DeepSeek-V3 (rope_interleave) and llama.cpp (deepseek2, and llama's NORM
// rope) rotate ADJACENT pairs (2j, 2j+1); HF Llama/Qwen rotate half-split pairs (j, j+d/2). Reordering the rows of
// the projections that feed a rope slice turns one into the other exactly (q·k is a sum over pairs); which rows
// those are is the attention kind's (model/attention ropeRows). What else a stock layout can express is per kind:
// export/kinds/ (mla-stock.ts for MLA).

import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { attentionKind } from '../model/attention/index.js';

export type ExportTarget = 'gguf' | 'hf';

const f32 = (t: Tensor): Float32Array => t.toF32();

/**
 * Rows [start, start+d) of each block, reordered from half-split pairs to adjacent pairs:
 * new row start+2j ← old start+j, new start+2j+1 ← old start+d/2+j. `data` is (rows, cols) row-major;
 * `starts` lists the first row of every rope slice (one per head). Returns a new array.
 */
export function halfToAdjacentRows(data: Float32Array, cols: number, starts: number[], d: number): Float32Array {
  const out = data.slice();
  const h = d / 2;
  for (const s of starts) {
    for (let j = 0; j < h; j++) {
      out.set(data.subarray((s + j) * cols, (s + j + 1) * cols), (s + 2 * j) * cols);
      out.set(data.subarray((s + h + j) * cols, (s + h + j + 1) * cols), (s + 2 * j + 1) * cols);
    }
  }
  return out;
}

/** Inverse of halfToAdjacentRows (tests and importers). */
export function adjacentToHalfRows(data: Float32Array, cols: number, starts: number[], d: number): Float32Array {
  const out = data.slice();
  const h = d / 2;
  for (const s of starts) {
    for (let j = 0; j < h; j++) {
      out.set(data.subarray((s + 2 * j) * cols, (s + 2 * j + 1) * cols), (s + j) * cols);
      out.set(data.subarray((s + 2 * j + 1) * cols, (s + 2 * j + 2) * cols), (s + h + j) * cols);
    }
  }
  return out;
}

/** Permute a tensor's rope rows (matrix (rows, cols) or bias (rows)) in place in the map. */
function permuteRows(weights: Map<string, Tensor>, name: string, starts: number[], d: number): void {
  const t = weights.get(name);
  if (!t) return;
  const cols = t.shape.length === 1 ? 1 : t.shape[1]!;
  weights.set(name, new Tensor(t.shape, halfToAdjacentRows(f32(t), cols, starts, d)));
}

/** The same model with adjacent-pair rope (a copy of the map; tensors that change are new). */
export function toAdjacentPairing(cfg: ModelConfig, weights: Map<string, Tensor>): { config: ModelConfig; weights: Map<string, Tensor> } {
  const w = new Map(weights);
  if (cfg.ropePairing === 'adjacent') return { config: cfg, weights: w };
  cfg.layers.forEach((a, i) => {
    for (const r of attentionKind(a).ropeRows(cfg, i, a)) for (const s of ['weight', 'bias']) permuteRows(w, `${r.tensor}.${s}`, r.starts, r.d);
  });
  return { config: { ...cfg, ropePairing: 'adjacent' }, weights: w };
}

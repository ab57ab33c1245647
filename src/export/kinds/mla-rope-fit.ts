// Rope frequencies a stock engine cannot express, replaced by the nearest form it can, with the cost measured.
// llama.cpp's deepseek2 graph rotates with base^(−2i/Dr)·freq_scale only (ggml_rope_ext is given no rope_freqs
// tensor there, unlike the llama graph), and the stock DeepSeek-V3 config has one rope_theta and one rope_scaling.
// When the kept frequencies are not a geometric run (a Llama-3 teacher's llama3 scaling bends the band between its
// low and high frequency limits, and no run of the requested size avoids it), the export rotates with the nearest
// geometric run instead (of two candidates: the run keeping the most pairs exact, and least squares in log
// frequency, the one that changes the logits less), measures what that changes in our own forward on
// seeded tokens (relative logit error ‖Δ‖/‖logits‖), prints it, and refuses above a tolerance.
// Legend: Dr rope dims, T tokens, V vocab.

import type { Tensor } from '../../tensor/tensor.js';
import { relError } from '../../tensor/tensor.js';
import { mulberry32 } from '../../tensor/rng.js';
import { noGrad } from '../../autograd/var.js';
import { getBackend } from '../../backends/index.js';
import { Model } from '../../model/model.js';
import { forward } from '../../model/forward.js';
import type { MlaAttention, ModelConfig } from '../../model/config.js';
import { geometricFit, stockRopeParams } from '../../io/deepseek.js';
import { geometricCandidates } from '../../convert/rope-select.js';
import { UserError } from '../../errors.js';

/** Default largest relative logit error a rope fit may cost (`mla export --rope-tolerance`). */
export const ROPE_TOLERANCE = 1e-2;

export interface RopeFit {
  config: ModelConfig;
  notes: string[];
  /** Relative logit error of the fitted model against the original (0 when nothing changed). */
  error: number;
}

/** Relative logit error between two configs of the same weights on T seeded random tokens (cpu backend when built). */
export function configLogitError(a: ModelConfig, b: ModelConfig, weights: Map<string, Tensor>, T: number, seed = 1): number {
  const be = getBackend('auto');
  const rng = mulberry32(seed);
  const ids = Int32Array.from({ length: T }, () => Math.floor(rng() * a.vocabSize));
  const run = (cfg: ModelConfig): Float32Array | Float64Array => {
    const m = Model.fromWeights(cfg, weights, be);
    return noGrad(() => forward(m, ids, 1, T).value.toHost());
  };
  return relError(run(b), run(a));
}

/**
 * The model with rope frequencies the target can write: unchanged when they already are (a geometric run; for 'hf'
 * also the llama3 form of io/deepseek.ts stockRopeParams), else every MLA layer rotated by the nearest geometric run,
 * with the measured logit error in the notes, or a UserError when it exceeds `tolerance`. The caller checked that
 * all MLA layers share one frequency set.
 */
export function fitStockRope(
  cfg: ModelConfig, weights: Map<string, Tensor>, target: 'gguf' | 'hf', tolerance: number, source: string,
): RopeFit {
  const first = cfg.layers.find((a): a is MlaAttention => a.kind === 'mla');
  if (!first) return { config: cfg, notes: [], error: 0 };
  const freqs = first.ropeInvFreq;
  if (geometricFit(freqs)) return { config: cfg, notes: [], error: 0 };
  if (target === 'hf' && stockRopeParams(cfg, freqs)) {
    return {
      config: cfg, error: 0,
      notes: [
        "rope: the kept pairs are the teacher's llama3-scaled frequencies j = 0, s, 2s, …: written as rope_theta with the teacher's llama3 " +
          "rope_scaling, exact in transformers; vLLM and SGLang turn any rope_scaling into deepseek_yarn and will not reproduce it",
      ],
    };
  }
  // Two candidates (the run keeping the most pairs exact, and the least-squares run moving every pair a little):
  // which one disturbs the logits less depends on the model, so both are measured and the better kept.
  const T = Math.min(cfg.maxPositions, 256);
  const tried = geometricCandidates(freqs).map((f) => {
    const c: ModelConfig = { ...cfg, layers: cfg.layers.map((a) => (a.kind === 'mla' ? { ...a, ropeInvFreq: f } : a)) };
    return { fitted: f, config: c, error: configLogitError(cfg, c, weights, T) };
  });
  const { fitted, config, error } = tried.reduce((a, b) => (b.error < a.error ? b : a));
  const show = (f: number[]): string => f.map((x) => x.toPrecision(4)).join(', ');
  const what =
    `rope frequencies [${show(freqs)}] are not a geometric run (base^(-2i/Dr)/factor), which is all ` +
    `${target === 'gguf' ? "llama.cpp's deepseek2 graph (no rope_freqs there)" : 'the stock DeepSeek-V3 config'} can express; the nearest ` +
    `geometric run [${show(fitted)}] changes the logits by ${error.toExponential(2)} (relative, ${T} random tokens)`;
  if (!(error <= tolerance)) {
    throw new UserError(
      `${source}: ${what}, above the tolerance ${tolerance} ({ropeTolerance}): convert with a rope dim whose pairs avoid the rope-scaling ` +
        'band (mla plan MODEL lists them) or distil after exporting with a larger {ropeTolerance}',
    );
  }
  return { config, error, notes: [`${what} (tolerance ${tolerance}): exported with the nearest run`] };
}

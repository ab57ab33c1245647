// The conversion's defaults, in one place: the library fills them in (withConvertDefaults) and `mla convert` shows
// and uses the same values (its flag table reads them from here).

import type { CalibrationOptions } from './calibrate.js';
import type { ConvertOptions } from './convert.js';
import type { ModelConfig } from '../model/config.js';
import { parameterCount } from '../model/weights.js';

/** Every ConvertOptions field with its default (ropeDim's default, half the head dim, depends on the model). */
export const CONVERT_DEFAULTS = {
  plan: { kind: 'ratio', ratio: 4 },
  ropeMethod: 'transmla',
  ropeRule: 'geometric',
  basis: 'activation',
  qRank: null,
  latentNorm: false,
  nopeInit: 'mean-rotation',
  nopeKeys: 'residual',
  freqfold: 1,
  kvBalance: 'energy',
  keepLayers: [],
  calib: { samples: 32, length: 256, seed: 1234 },
} as const satisfies Omit<ConvertOptions, 'ropeDim' | 'calib'> & { calib: CalibrationOptions };

/**
 * The default calibration's compute cap, in teacher forward FLOPs: 32 sequences × 256 tokens while that costs at most
 * this (teachers up to ~0.5B parameters), fewer above it (12 for a 1.2B teacher), never fewer than
 * MIN_DEFAULT_CALIB_SAMPLES. 8 TFLOP is about 2 minutes of teacher sampling on 2 laptop cores; on stories260K and a
 * trained head-dim-32 GQA model 8–64 samples give the same converted perplexity within the seed-to-seed spread
 * (README "Scale", bench/calib-size.sh). An explicit calib.samples is always used as given.
 */
export const CALIB_FLOP_BUDGET = 8e12;
export const MIN_DEFAULT_CALIB_SAMPLES = 8;

/** Forward FLOPs per token of a teacher: 2 per weight of every matmul (the layers and the output head; the embedding
 *  lookup is free), attention scores left out (small at calibration lengths). */
export function forwardFlopsPerToken(cfg: ModelConfig): number {
  const embed = cfg.vocabSize * cfg.hiddenSize;
  return 2 * (parameterCount(cfg) - (cfg.tieEmbeddings ? 0 : embed));
}

/** Calibration sequences by default for `cfg` at `length` tokens each: CONVERT_DEFAULTS' 32, capped by CALIB_FLOP_BUDGET. */
export function defaultCalibSamples(cfg: ModelConfig, length: number): number {
  const perSample = forwardFlopsPerToken(cfg) * Math.min(length, cfg.maxPositions);
  const fit = Math.floor(CALIB_FLOP_BUDGET / perSample);
  return Math.max(MIN_DEFAULT_CALIB_SAMPLES, Math.min(CONVERT_DEFAULTS.calib.samples, fit));
}

/** Conversion options as a caller may give them: any field left out takes its default. */
export type ConvertSettings = Partial<Omit<ConvertOptions, 'calib'>> & { calib?: Partial<CalibrationOptions> };

/** Full ConvertOptions from partial settings; with the teacher's config, calib.samples left out is budgeted by its size
 *  (defaultCalibSamples). */
export function withConvertDefaults(s: ConvertSettings = {}, teacher?: ModelConfig): ConvertOptions {
  const d = CONVERT_DEFAULTS;
  const length = s.calib?.length ?? d.calib.length;
  const samples = s.calib?.samples ?? (teacher ? defaultCalibSamples(teacher, length) : d.calib.samples);
  return {
    plan: s.plan ?? { ...d.plan },
    ropeDim: s.ropeDim,
    ropeMethod: s.ropeMethod ?? d.ropeMethod,
    ropeRule: s.ropeRule ?? d.ropeRule,
    basis: s.basis ?? d.basis,
    qRank: s.qRank ?? d.qRank,
    latentNorm: s.latentNorm ?? d.latentNorm,
    nopeInit: s.nopeInit ?? d.nopeInit,
    nopeKeys: s.nopeKeys ?? d.nopeKeys,
    freqfold: s.freqfold ?? d.freqfold,
    kvBalance: s.kvBalance ?? d.kvBalance,
    keepLayers: s.keepLayers ?? [...d.keepLayers],
    calib: { ...d.calib, ...s.calib, samples },
  };
}

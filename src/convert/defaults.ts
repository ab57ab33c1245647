// The conversion's defaults, in one place: the library fills them in (withConvertDefaults) and `mla convert` shows
// and uses the same values (its flag table reads them from here).

import type { CalibrationOptions } from './calibrate.js';
import type { ConvertOptions } from './convert.js';

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

/** Conversion options as a caller may give them: any field left out takes its default. */
export type ConvertSettings = Partial<Omit<ConvertOptions, 'calib'>> & { calib?: Partial<CalibrationOptions> };

/** Full ConvertOptions from partial settings. */
export function withConvertDefaults(s: ConvertSettings = {}): ConvertOptions {
  const d = CONVERT_DEFAULTS;
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
    calib: { ...d.calib, ...s.calib },
  };
}

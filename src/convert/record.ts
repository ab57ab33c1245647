// conversion.json: how a model directory was made (options, ranks, per-layer spectra); `mla compare` reads it back
// (io/run-files.ts readConversionRecord) to draw the spectra and note the conversion settings.

import { basename, join } from 'node:path';
import { saveModelDir } from '../io/deepseek.js';
import type { SafetensorsDtype } from '../io/safetensors.js';
import type { ConvertOptions, ConvertResult, ConvertSummary } from './convert.js';

export { CONVERSION_RECORD } from '../io/run-files.js';
import { CONVERSION_RECORD, writeTextAtomic } from '../io/run-files.js';

/** The conversion.json text for a conversion of `source` with `opts`. */
export function conversionRecordJson(source: string, opts: ConvertOptions, r: ConvertSummary): string {
  const rec = {
    source, rope_method: opts.ropeMethod, basis: opts.basis, nope_init: opts.nopeInit, nope_keys: opts.nopeKeys ?? 'residual', freqfold: opts.freqfold ?? 1, kv_balance: opts.kvBalance ?? 'energy', latent_norm: opts.latentNorm,
    q_rank: opts.qRank, keep_layers: opts.keepLayers, plan: opts.plan, compression: r.compression,
    teacher_kv_bytes_per_token: r.teacherKvBytesPerToken, kv_bytes_per_token: r.studentKvBytesPerToken, layers: r.layers,
  };
  return JSON.stringify(rec) + '\n';
}

/** Write DIR/conversion.json (atomically) for a conversion of `source` with `opts`. */
export function writeConversionRecord(dir: string, source: string, opts: ConvertOptions, r: ConvertSummary): void {
  writeTextAtomic(join(dir, CONVERSION_RECORD), conversionRecordJson(source, opts, r));
}

export interface SaveConvertedOptions {
  /** Where the teacher came from (recorded in the safetensors metadata and conversion.json). */
  source: string;
  dtype?: SafetensorsDtype;
  /** Replace a non-empty directory. */
  overwrite?: boolean;
  /** Files to carry in (the tokenizer: io/tokenizer-files.ts). */
  copyFiles?: { from: string; name: string }[];
}

/** Save a conversion as a model directory (DeepSeek-V3 layout, written atomically) with its conversion.json. */
export function saveConverted(dir: string, opts: ConvertOptions, r: ConvertResult, save: SaveConvertedOptions): void {
  saveModelDir(dir, r.config, r.weights, {
    dtype: save.dtype, overwrite: save.overwrite, copyFiles: save.copyFiles, metadata: { mla_upcycle_source: basename(save.source) }, // base name only: no machine paths in published files,
    // Inside the directory before it is moved into place: the model and its record appear together or not at all.
    extraFiles: { [CONVERSION_RECORD]: conversionRecordJson(save.source, opts, r) },
  });
}

// conversion.json: how a model directory was made (options, ranks, per-layer spectra); `mla compare` reads it back
// (report/report.ts readConversionRecord) to draw the spectra and note the conversion settings.

import { join } from 'node:path';
import { writeFileAtomic } from '../io/binfile.js';
import { saveModelDir } from '../io/deepseek.js';
import type { SafetensorsDtype } from '../io/safetensors.js';
import type { ConvertOptions, ConvertResult } from './convert.js';

export const CONVERSION_RECORD = 'conversion.json';

/** Write DIR/conversion.json (atomically) for a conversion of `source` with `opts`. */
export function writeConversionRecord(dir: string, source: string, opts: ConvertOptions, r: ConvertResult): void {
  const rec = {
    source, rope_method: opts.ropeMethod, basis: opts.basis, nope_init: opts.nopeInit, latent_norm: opts.latentNorm,
    q_rank: opts.qRank, keep_layers: opts.keepLayers, plan: opts.plan, compression: r.compression,
    teacher_kv_bytes_per_token: r.teacherKvBytesPerToken, kv_bytes_per_token: r.studentKvBytesPerToken, layers: r.layers,
  };
  const file = join(dir, CONVERSION_RECORD);
  writeFileAtomic(file, `${file}.tmp`, (write) => write(new TextEncoder().encode(JSON.stringify(rec) + '\n')));
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
    dtype: save.dtype, overwrite: save.overwrite, copyFiles: save.copyFiles, metadata: { mla_upcycle_source: save.source },
  });
  writeConversionRecord(dir, save.source, opts, r);
}

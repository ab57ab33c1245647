// The conversion written straight to a model directory, layer by layer (what `mla convert` runs): the output's
// safetensors header is laid out from the planned shapes (io/safetensors-stream.ts), each converted layer's tensors are
// written as soon as they are made and dropped, and every tensor the conversion leaves unchanged (embeddings, MLP,
// norms, o_proj, the head) is copied from the teacher in pieces of at most COPY_BYTES in its stored dtype. Memory is
// about one layer's attention in f64 (plus the teacher model when calibration needs its forward pass), not the model.
// The directory appears whole or not at all (io/deepseek.ts streamModelDir).

import { basename } from 'node:path';
import { encodeFromF32, type StorageDtype } from '../io/dtype.js';
import { streamModelDir } from '../io/deepseek.js';
import type { Tokenizer } from '../io/tokenizer.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { prepareConversion, runConversion, type ConvertGiven, type ConvertOptions, type ConvertSummary, type Teacher } from './convert.js';
import { CONVERSION_RECORD, conversionRecordJson } from './record.js';

/** Largest piece of an unchanged tensor held at once while it is copied. */
export const COPY_BYTES = 32 << 20;

export interface ConvertToDirOptions {
  /** Where the teacher came from (its base name goes into the safetensors metadata and conversion.json). */
  source: string;
  /** Every tensor written in this dtype; default: each unchanged tensor in its own stored dtype, each converted one in
   *  that of its layer's q_proj (bf16 in, bf16 out). */
  dtype?: StorageDtype;
  overwrite?: boolean;
  /** Files carried into the directory (the tokenizer: io/tokenizer-files.ts). */
  copyFiles?: { from: string; name: string }[];
}

/**
 * Convert `teacher` (options as convert() takes them) and write the result to `dir` as a model directory in the
 * DeepSeek-V3 layout with its conversion.json, one layer at a time. Same tensors, bit for bit, as convert() followed by
 * saveConverted() with the same dtype.
 */
export function convertToDir(
  teacher: Teacher, tokenizer: Tokenizer | null, opts: ConvertOptions, dir: string, save: ConvertToDirOptions,
  progress: { calib: ProgressSink; layers: ProgressSink } = { calib: silentProgress, layers: silentProgress }, given: ConvertGiven = {},
): ConvertSummary {
  const prep = prepareConversion(teacher, tokenizer, opts, progress.calib, given);
  const planned = prep.planned.map((p) => ({ name: p.name, shape: p.shape, dtype: save.dtype ?? p.dtype }));
  const dtype = planned[0]!.dtype; // the embedding's: most of the weights
  let summary: ConvertSummary | null = null;
  streamModelDir(dir, planned, { overwrite: save.overwrite, copyFiles: save.copyFiles, metadata: { mla_upcycle_source: basename(save.source) } }, (w) => {
    summary = runConversion(prep, {
      put(name, t) {
        const dt = w.nextDtype();
        w.begin(name, t.shape);
        w.write(encodeFromF32(dt, t.toF32()));
      },
      copy(name) {
        const dt = w.nextDtype();
        w.begin(name, teacher.weights.info(name).shape);
        teacher.weights.copy(name, dt, COPY_BYTES, (bytes) => w.write(bytes));
      },
    }, progress.layers);
    // Inside the directory before it is moved into place: the model and its record appear together or not at all.
    return { config: summary.config, dtype, extraFiles: { [CONVERSION_RECORD]: conversionRecordJson(save.source, opts, summary) } };
  });
  return summary!;
}

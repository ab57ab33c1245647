// Checks a distillation plan before anything slow happens (teacher sampling, training): the models must share a
// vocabulary, the sequence length must fit both contexts, and one micro-batch's logits must fit in memory
// (unless the engine computes the loss in row chunks), and the student must have a model-directory form (it is saved at
// every checkpoint: failing there would lose minutes of training).

import type { ModelConfig } from '../model/config.js';
import { OptionError, UserError } from '../errors.js';
import { modelDirConfigJson } from '../io/deepseek.js';
import type { DistillSettings } from '../io/run-files.js';

/** Bytes one micro-batch's logits may take (teacher + student, f32, plus their gradient): beyond this the run would
 *  allocate until the process dies; --accum reaches large batches without it. */
export const MAX_MICROBATCH_LOGIT_BYTES = 8 * 2 ** 30;

/**
 * Refuse a plan that cannot run: vocabularies differ; seq (tokens per row) exceeds the teacher's or the student's
 * context; batch·seq·V·4 bytes ·3 (teacher logits, student logits, their gradient) exceeds MAX_MICROBATCH_LOGIT_BYTES.
 * Messages name the option (seq, batch, student; the CLI shows the flag).
 */
export function checkDistillPlan(
  teacher: ModelConfig, student: ModelConfig, s: DistillSettings, paths: { teacher: string; student: string }, opts: { chunkedLoss?: boolean } = {},
): void {
  if (teacher.vocabSize !== student.vocabSize) {
    throw new OptionError('student', paths.student, `vocabulary ${student.vocabSize} ≠ the teacher's ${teacher.vocabSize} (they must share a tokenizer)`);
  }
  try {
    modelDirConfigJson(student, 'float32', true);
  } catch (e) {
    if (e instanceof UserError) throw new OptionError('student', paths.student, `cannot be saved as a model directory (checkpoints, the result): ${e.message}`);
    throw e;
  }
  const ctx = Math.min(teacher.maxPositions, student.maxPositions);
  if (s.seq > ctx) {
    throw new OptionError('seq', undefined, `expected at most ${ctx} (the ${teacher.maxPositions <= student.maxPositions ? "teacher's" : "student's"} context), got ${s.seq}`);
  }
  // An engine that computes the loss over row chunks (the torch engine's --kl-chunk) never holds them all.
  const bytes = 3 * 4 * s.batch * s.seq * teacher.vocabSize;
  if (!opts.chunkedLoss && bytes > MAX_MICROBATCH_LOGIT_BYTES) {
    throw new OptionError(
      'batch',
      undefined,
      `${s.batch} rows × ${s.seq} tokens × vocabulary ${teacher.vocabSize} needs ${(bytes / 2 ** 30).toFixed(1)} GiB of logits per micro-batch ` +
        `(limit ${MAX_MICROBATCH_LOGIT_BYTES / 2 ** 30} GiB): use a smaller {batch} with {accum}`,
    );
  }
}

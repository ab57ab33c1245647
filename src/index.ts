// The library API of mla-upcycle (package.json "main"): the jobs the `mla` commands run, with typed options.
//
//   const teacher = load('model-dir');                                   // or a llama2.c .bin with { tokenizer }
//   const mla = convert(teacher, { plan: { kind: 'ratio', ratio: 4 } }); // GQA/MHA → MLA (SVD/PCA init)
//   mla.save('out-dir');                                                 // DeepSeek-V3 layout + conversion.json
//   generate(mla, 'Once upon a time', { maxTokens: 50 });
//
// Errors a caller can act on are UserErrors; option problems are OptionErrors naming the option field (e.g. 'kvRank').
// Notes and messages name options as 'field'; the CLI shows the same text with its flags.

import { renderOptionRefs } from './errors.js';
import { Model } from './model/model.js';
import type { Tokenizer } from './io/tokenizer.js';
import type { BackendName } from './backends/index.js';
import { openModel, requireTokenizer, resolveBackend, type Opened } from './infer/open.js';
import { convert as convertModel, type ConvertResult } from './convert/convert.js';
import { withConvertDefaults, type ConvertSettings } from './convert/defaults.js';
import { saveConverted } from './convert/record.js';
import { convertSharedLatent } from './convert/xkv.js';
import { tokenizerFiles } from './io/tokenizer-files.js';
import { runDistill, type DistillJob, type DistillJobResult } from './train/run.js';
import { runDistillTorch, type TorchOverrides } from './train/torch-engine.js';
import { perplexity as perplexityOf, type PerplexityResult } from './eval/perplexity.js';
import { evaluateTasks, type TaskOptions, type TaskResult } from './eval/tasks.js';
import { readTaskFile, type TaskItem } from './eval/task-file.js';
import { runCompare, type CompareJob } from './eval/compare-run.js';
import type { CompareRow } from './report/report.js';
import { exportModel as exportJob, type ExportOptions, type ExportResult } from './export/export.js';
import { generate as generateIds } from './model/generate.js';
import type { ProgressSink } from './progress.js';

export { UserError, OptionError } from './errors.js';
export { CONVERT_DEFAULTS } from './convert/defaults.js';
export { DISTILL_DEFAULTS } from './train/run.js';
export type { TorchOverrides, TorchOptions } from './train/torch-engine.js';
export type {
  Model, Tokenizer, BackendName, ConvertSettings, ConvertResult, DistillJobResult, PerplexityResult, TaskOptions, TaskResult,
  TaskItem, CompareRow, ExportOptions, ExportResult, ProgressSink,
};

/** A model ready to run: the model on its backend, its tokenizer (null when none was found or given), its path. */
export interface Loaded extends Opened {
  /** The tokenizer file it was loaded with, when one was given (carried into directories written from it). */
  tokenizerPath?: string;
}

export interface LoadOptions {
  /** Tokenizer: a llama2.c tokenizer .bin, a tokenizer.json, or a directory holding one (needed for a llama2.c .bin). */
  tokenizer?: string;
  /** 'ref' (TypeScript, float64 accumulation), 'cpu' (the native addon) or 'auto' (cpu when built; the default). */
  backend?: BackendName;
}

/** Load an HF llama-family directory, a directory this tool wrote (DeepSeek-V3 layout), or a llama2.c checkpoint. */
export function load(path: string, options: LoadOptions = {}): Loaded {
  return { ...openModel(path, { tokenizer: options.tokenizer, backend: options.backend }), tokenizerPath: options.tokenizer };
}

const libraryText = (s: string): string => renderOptionRefs(s, (f) => `'${f}'`);

/** A converted student: runnable (same backend and tokenizer as its teacher), its conversion report, and save(). */
export interface Converted extends Loaded {
  result: ConvertResult;
  /** Write the student as a model directory (DeepSeek-V3 layout, with the teacher's tokenizer and conversion.json). */
  save(dir: string, options?: { dtype?: 'F32' | 'BF16'; overwrite?: boolean }): void;
}

/**
 * Convert a GQA/MHA teacher into MLA: per layer, the keys' rotary part becomes one shared rope key of ropeDim dims and
 * [K_nope; V] a rank-r latent, c = W_dkv·x, [k_nope; v] = W_ukv·c (X-EcoMLA / TransMLA). Options left out take
 * CONVERT_DEFAULTS (4× KV compression, transmla rope, activation basis).
 */
export function convert(teacher: Loaded, options: ConvertSettings & { shareLatent?: number } = {}): Converted {
  const opts = withConvertDefaults(options, teacher.model.config);
  // shareLatent G: xKV, groups of G adjacent layers share one latent (convert/xkv.ts; `mla convert --share-latent`).
  const r = options.shareLatent === undefined
    ? convertModel(teacher.model, teacher.tokenizer, opts)
    : convertSharedLatent(teacher.model, teacher.tokenizer, opts, options.shareLatent);
  const result = { ...r, notes: r.notes.map(libraryText) };
  return {
    model: Model.fromWeights(r.config, r.weights, teacher.model.be),
    tokenizer: teacher.tokenizer,
    tokenizerPath: teacher.tokenizerPath,
    source: teacher.source,
    result,
    save: (dir, o = {}) => saveConverted(dir, opts, r, { source: teacher.source, dtype: o.dtype, overwrite: o.overwrite, copyFiles: tokenizerFiles(teacher.source, teacher.tokenizerPath) }),
  };
}

export interface DistillOptions extends Omit<DistillJob, 'backend'> {
  backend?: BackendName;
}

/**
 * Distil a converted student from its teacher (model paths; the run directory `out` ends as the student's model
 * directory): loss = klWeight · τ² · KL(p_teacher,τ ‖ p_student,τ) + ceWeight · CE, AdamW with warmup and cosine decay.
 * Settings left out take DISTILL_DEFAULTS (or, with resume, the run's saved settings).
 */
export function distill(options: DistillOptions): DistillJobResult {
  return runDistill({ ...options, backend: resolveBackend(options.backend) });
}

/**
 * The same distillation on PyTorch (python/mla_torch; `mla distill --engine torch`): `torch` picks the device
 * (cuda / cpu), processes, dtype and memory options; resolves when the Python job has finished.
 */
export function distillTorch(options: DistillOptions, torch: TorchOverrides = {}): Promise<{ out: string; ppl: number; kl: number; tokens: number }> {
  return runDistillTorch({ ...options, backend: resolveBackend(options.backend) }, torch);
}

/** Measurements: perplexity, zero-shot multiple-choice tasks, and a teacher-vs-students comparison. */
export const evaluate = {
  /** Perplexity exp(mean NLL) over non-overlapping windows of ctx tokens (default min(256, the model's context)). */
  ppl(m: Loaded, text: string, options: { ctx?: number; batch?: number; progress?: ProgressSink } = {}): PerplexityResult {
    const ids = requireTokenizer(m).encode(text, true);
    return perplexityOf(m.model, ids, options.ctx ?? Math.min(256, m.model.config.maxPositions), options.batch ?? 8, options.progress);
  },
  /** acc and acc_norm (lm-evaluation-harness conventions) on task items, or a task file (JSONL). */
  tasks(m: Loaded, tasks: string | readonly TaskItem[], options: TaskOptions = {}): TaskResult {
    return evaluateTasks(m.model, requireTokenizer(m), typeof tasks === 'string' ? readTaskFile(tasks) : tasks, options);
  },
  /** KV bytes/token, compression, parameters, perplexity, KL to the teacher (and task scores) for every model; with
   *  `out`, report.md with its charts. */
  compare(job: CompareJob): { rows: CompareRow[]; report: string | null } {
    return runCompare(job);
  },
};

/** Export to GGUF (llama.cpp: llama or deepseek2) or the stock DeepSeek-V3 HF layout (transformers, vLLM, SGLang). */
export function exportModel(path: string, options: ExportOptions): ExportResult {
  const r = exportJob(path, options);
  return { ...r, notes: r.notes.map(libraryText) };
}

export interface GenerateOptions {
  /** Tokens to generate at most (default 256; stops early at EOS/BOS). */
  maxTokens?: number;
  /** Sampling temperature; 0 is greedy (default 1). */
  temperature?: number;
  /** Nucleus sampling: the smallest set of tokens with probability ≥ topP (default 0.9). */
  topP?: number;
  seed?: number;
  /** Called with each new token id. */
  onToken?: (id: number) => void;
}

/** Continue `prompt` (encoded with a leading BOS) with the model's cache (latent-only for MLA layers); returns the
 *  decoded prompt + continuation. */
export function generate(m: Loaded, prompt: string, options: GenerateOptions = {}): string {
  const tok = requireTokenizer(m);
  const ids = tok.encode(prompt, true);
  const stopIds = [tok.eosId, tok.bosId].filter((x): x is number => x !== null);
  const out = generateIds(m.model, ids, {
    maxTokens: options.maxTokens ?? 256, temperature: options.temperature ?? 1, topP: options.topP ?? 0.9, seed: options.seed ?? 42,
    stopIds, onToken: options.onToken,
  });
  return tok.decode([...ids, ...out]);
}

// mla convert MODEL --out DIR [--target native|gguf|transformers|vllm|sglang|llamacpp-cuda]
//   [--kv-rank R | --kv-ratio X | --energy δ] [--rope-dim D] [--rope-method ecomla|mha2mla|transmla]
//   [--basis weight|activation] [--nope-init mean-rotation|identity] [--q-rank R] [--latent-norm] [--keep-layers 0,5] [--calib FILE] [--calib-samples N]
//   [--calib-len T] [--seed S] [--dtype f32|bf16] [--overwrite] [--json]

import { checkOutput } from '../io/output.js';
import { requireRegularFile } from '../io/text.js';
import { cliText, commonFlags, num, numFlag, nonNegativeInt, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel } from '../infer/open.js';
import { convert, needsCalibration, NOPE_INITS, type ConvertOptions, type ConvertResult, type NopeInit, type RankPlan } from '../convert/convert.js';
import { calibrationProgress } from '../convert/calibrate.js';
import { ROPE_METHODS, type RopeMethod } from '../convert/rope-select.js';
import { BASIS_METHODS, type BasisMethod } from '../convert/basis.js';
import { saveConverted } from '../convert/record.js';
import { CONVERT_DEFAULTS } from '../convert/defaults.js';
import { tokenizerFiles } from '../io/tokenizer-files.js';
import { TARGETS, TARGET_RULES, type Target } from '../convert/targets.js';
import { UserError } from '../errors.js';
import { Progress } from './progress.js';
import { table } from '../report/table.js';

export const convertSpec = {
  name: 'convert',
  args: 'MODEL',
  flags: {
    out: { type: 'string', value: 'DIR', doc: 'output model directory (required; DeepSeek-V3 layout)' },
    'kv-rank': { type: 'string', value: 'R', field: 'plan.rank', doc: 'latent rank r_kv of every converted layer' },
    'kv-ratio': { type: 'string', value: 'X', field: 'plan.ratio', defaultText: `${CONVERT_DEFAULTS.plan.ratio} (when neither --kv-rank nor --energy)`, doc: "whole-cache KV compression against the teacher" },
    energy: { type: 'string', value: 'δ', field: 'plan.delta', doc: 'per-layer rank: smallest keeping δ of the spectrum energy, rounded up to a multiple of 8' },
    'rope-dim': { type: 'string', value: 'D', defaultText: 'half the head dim', doc: 'dims of the one shared rope key (even)' },
    'rope-method': { type: 'string', value: 'ecomla|mha2mla|transmla', default: CONVERT_DEFAULTS.ropeMethod, doc: 'which rotary components the rope key keeps' },
    target: {
      type: 'string', value: 'native|gguf|transformers|vllm|sglang|llamacpp-cuda',
      defaultText: 'none: same rope pairs in every layer (exports to GGUF and DeepSeek-V3); no shape rule',
      doc: "plan the shapes the engine's fast kernels accept (mla plan); native: per-layer rope choice, native format only",
    },
    basis: { type: 'string', value: 'weight|activation', default: CONVERT_DEFAULTS.basis, doc: 'latent basis: joint SVD of [K_nope; V] weights, or PCA of calibration activations' },
    'q-rank': { type: 'string', value: 'R', defaultText: 'full-rank query', doc: 'low-rank query (q_a_proj / q_a_layernorm / q_b_proj)' },
    'latent-norm': { type: 'boolean', default: false, doc: 'add kv_a_layernorm (stock engines require it; changes the function until distillation)' },
    'nope-init': { type: 'string', value: 'mean-rotation|identity', default: CONVERT_DEFAULTS.nopeInit, doc: 'no-rope path init of a rotary pair that leaves the rope key' },
    'keep-layers': { type: 'string', value: 'I,J,...', doc: 'layers kept as original attention (a hybrid model)' },
    calib: { type: 'string', value: 'FILE', field: 'calib.file', defaultText: "the teacher's own samples", doc: 'calibration text' },
    'calib-samples': { type: 'string', value: 'N', field: 'calib.samples', default: String(CONVERT_DEFAULTS.calib.samples), doc: 'calibration sequences' },
    'calib-len': { type: 'string', value: 'T', field: 'calib.length', default: String(CONVERT_DEFAULTS.calib.length), doc: 'calibration sequence length in tokens' },
    seed: { type: 'string', value: 'S', field: 'calib.seed', default: String(CONVERT_DEFAULTS.calib.seed), doc: 'seed of the calibration samples' },
    dtype: { type: 'string', value: 'f32|bf16', default: 'f32', doc: 'weight dtype written' },
    overwrite: { type: 'boolean', default: false, doc: 'replace a non-empty --out directory' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

type ConvertValues = ReturnType<typeof parse<typeof convertSpec.flags>>['values'];

/** Typed conversion options from flags (shared with `mla demo`). */
export function convertOptionsFrom(v: ConvertValues): ConvertOptions {
  const given = (['kv-rank', 'kv-ratio', 'energy'] as const).filter((k) => v[k] !== undefined);
  if (given.length > 1) throw new UserError(`mla convert: give one of --kv-rank, --kv-ratio, --energy (got ${given.map((g) => '--' + g).join(', ')})`);
  let plan: RankPlan = { ...CONVERT_DEFAULTS.plan };
  if (v['kv-rank'] !== undefined) plan = { kind: 'rank', rank: num(v['kv-rank'], 'kv-rank', 0, positiveInt, 'a positive integer') };
  if (v['kv-ratio'] !== undefined) plan = { kind: 'ratio', ratio: num(v['kv-ratio'], 'kv-ratio', 0, (n) => n >= 1, 'a compression ≥ 1') };
  if (v.energy !== undefined) plan = { kind: 'energy', delta: num(v.energy, 'energy', 0, (n) => n > 0 && n <= 1, 'a fraction in (0, 1]') };
  const ropeMethod = v['rope-method'] as RopeMethod;
  if (!ROPE_METHODS.includes(ropeMethod)) throw new UserError(`--rope-method: expected ${ROPE_METHODS.join(', ')}, got '${ropeMethod}'`);
  const target = v.target as Target | undefined;
  if (target !== undefined && !TARGETS.includes(target)) throw new UserError(`--target: expected ${TARGETS.join(', ')}, got '${target}'`);
  const basis = v.basis as BasisMethod;
  if (!BASIS_METHODS.includes(basis)) throw new UserError(`--basis: expected ${BASIS_METHODS.join(', ')}, got '${basis}'`);
  const nopeInit = v['nope-init'] as NopeInit;
  if (!NOPE_INITS.includes(nopeInit)) throw new UserError(`--nope-init: expected ${NOPE_INITS.join(', ')}, got '${nopeInit}'`);
  const keepLayers = v['keep-layers']
    ? v['keep-layers'].split(',').map((s) => num(s.trim(), 'keep-layers', 0, nonNegativeInt, 'a comma-separated list of layer indices'))
    : [];
  return {
    plan,
    ropeDim: v['rope-dim'] === undefined ? undefined : num(v['rope-dim'], 'rope-dim', 0, (n) => positiveInt(n) && n % 2 === 0, 'an even positive integer'),
    ropeMethod,
    ropeRule: target ? TARGET_RULES[target].rope : CONVERT_DEFAULTS.ropeRule,
    target,
    basis,
    qRank: v['q-rank'] === undefined ? null : num(v['q-rank'], 'q-rank', 0, positiveInt, 'a positive integer'),
    latentNorm: v['latent-norm'] ?? false,
    nopeInit,
    keepLayers,
    calib: {
      file: v.calib,
      samples: numFlag(v['calib-samples'], 'calib-samples', positiveInt, 'a positive integer'),
      length: numFlag(v['calib-len'], 'calib-len', (n) => Number.isInteger(n) && n >= 2, 'an integer ≥ 2'),
      seed: numFlag(v.seed, 'seed', nonNegativeInt, 'a non-negative integer'),
    },
  };
}

/** The per-layer table and totals printed by convert. */
export function convertReport(r: ConvertResult): string {
  const rows = r.layers.map((l) => [
    l.layer, l.kind, l.kvRank ?? '-', l.ropeDim ?? '-', l.kind === 'mla' ? `${(100 * l.energyKept).toFixed(2)}%` : '-',
    l.kvValuesPerToken * 4, l.teacherValuesPerToken * 4,
  ]);
  return [
    table(['layer', 'attention', 'r_kv', 'd_r', 'energy kept', 'KV bytes/token', 'teacher bytes/token'], rows),
    '',
    `KV cache per token: ${r.studentKvBytesPerToken} bytes (teacher ${r.teacherKvBytesPerToken}) → compression ${r.compression.toFixed(2)}×`,
    ...r.notes.map((n) => `note: ${cliText(convertSpec, n)}`),
  ].join('\n');
}

export async function convertCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, convertSpec);
  const path = onePositional(positionals, 'MODEL', 'convert');
  if (!values.out) throw new UserError('mla convert: --out DIR is required');
  const dtype = values.dtype === 'bf16' ? 'BF16' : values.dtype === 'f32' ? 'F32' : null;
  if (!dtype) throw new UserError(`--dtype: expected f32 or bf16, got '${values.dtype}'`);
  const opts = convertOptionsFrom(values);
  // Everything cheap first: the output must be writable and away from the inputs before minutes of conversion.
  checkOutput({ flag: '--out', out: values.out, inputs: [path, values.tokenizer, opts.calib.file], kind: 'dir', overwrite: values.overwrite ?? false });
  if (opts.calib.file) requireRegularFile(opts.calib.file, `--calib ${opts.calib.file}`);
  const opened = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  // The bar's first line (after one measured step) carries the calibration's ETA.
  const calibSteps = calibrationProgress(opened.model.config.maxPositions, opts.calib);
  const calibBar = new Progress(opts.calib.file ? 'calibrate' : 'calibrate (teacher samples)', calibSteps.total, calibSteps.unit);
  const layerBar = new Progress('convert', opened.model.config.numLayers, 'layer');
  const r = convert(opened.model, opened.tokenizer, opts, { calib: needsCalibration(opts) ? calibBar : { tick() {}, end() {} }, layers: layerBar });
  saveConverted(values.out, opts, r, { source: path, dtype, overwrite: values.overwrite, copyFiles: tokenizerFiles(path, values.tokenizer) });
  if (values.json) {
    process.stdout.write(JSON.stringify({ out: values.out, layers: r.layers.map(({ spectrum: _s, ...l }) => l), teacher_kv_bytes_per_token: r.teacherKvBytesPerToken, kv_bytes_per_token: r.studentKvBytesPerToken, compression: r.compression, notes: r.notes.map((n) => cliText(convertSpec, n)) }, null, 2) + '\n');
  } else {
    process.stdout.write(convertReport(r) + `\nwrote ${values.out}\n`);
  }
}

// mla convert MODEL --out DIR [--target native|gguf|transformers|vllm|sglang|llamacpp-cuda]
//   [--kv-rank R | --kv-ratio X | --energy δ] [--rope-dim D] [--rope-method ecomla|mha2mla|transmla]
//   [--recipe x-ecomla|mha2mla|transmla] [--freqfold F|auto] [--share-latent G] [--basis weight|activation] [--nope-init mean-rotation|identity] [--nope-keys residual|drop] [--q-rank R] [--latent-norm] [--keep-layers 0,5] [--calib FILE] [--calib-samples N]
//   [--calib-len T] [--seed S] [--dtype f32|bf16 (default: the input's)] [--overwrite] [--json]

import { checkOutput } from '../io/output.js';
import { requireRegularFile } from '../io/text.js';
import { cliText, commonFlags, num, numFlag, nonNegativeInt, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { openModel, resolveBackend } from '../infer/open.js';
import { openWeights, type OpenedWeights } from '../io/load.js';
import type { Backend } from '../tensor/backend.js';
import {
  checkFoldOptions, needsCalibration, NOPE_INITS, NOPE_KEYS, targetOptions, type ConvertOptions, type ConvertSummary, type NopeInit, type NopeKeys, type RankPlan,
} from '../convert/convert.js';
import { convertToDir } from '../convert/stream.js';
import { isRecipe, RECIPE_OPTIONS, RECIPES } from '../convert/recipes.js';
import { convertSharedLatent } from '../convert/xkv.js';
import { saveConverted } from '../convert/record.js';
import { PlanSearch, SEARCH_DEFAULTS, requireBudget, type SearchResult } from '../convert/search.js';
import { calibrationProgress } from '../convert/calibrate.js';
import { autoFolds } from '../convert/freqfold.js';
import { teacherAttention } from '../convert/kinds.js';
import { ROPE_METHODS, type RopeMethod } from '../convert/rope-select.js';
import { BASIS_METHODS, type BasisMethod } from '../convert/basis.js';
import { CALIB_FLOP_BUDGET, CONVERT_DEFAULTS, defaultCalibSamples, forwardFlopsPerToken, MIN_DEFAULT_CALIB_SAMPLES } from '../convert/defaults.js';
import { tokenizerFiles } from '../io/tokenizer-files.js';
import { TARGETS, TARGET_RULES, type Target } from '../convert/targets.js';
import { UserError } from '../errors.js';
import type { LayerStats } from '../convert/calibrate.js';
import { Progress, type ProgressSink } from './progress.js';
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
    recipe: {
      type: 'string', value: 'x-ecomla|mha2mla|transmla', defaultText: 'none: ours (the defaults below)',
      doc: "a seed paper's recipe exactly: sets --rope-method, --basis, --nope-init and --nope-keys (README: Conversion recipes)",
    },
    'rope-method': { type: 'string', value: 'ecomla|mha2mla|transmla', defaultText: CONVERT_DEFAULTS.ropeMethod, doc: 'which rotary components the rope key keeps' },
    freqfold: {
      type: 'string', value: 'F|auto', defaultText: '1 (--recipe transmla: auto)',
      doc: "TransMLA's FreqFold: treat F adjacent rope frequencies as one in the key PCA (transmla rope method; F a multiple of head_dim/rope_dim dividing the pairs); auto doubles F from head_dim/rope_dim while calibration KL improves",
    },
    target: {
      type: 'string', value: 'native|gguf|transformers|vllm|sglang|llamacpp-cuda',
      defaultText: 'none: same rope pairs in every layer (exports to GGUF and DeepSeek-V3); no shape rule',
      doc: "plan the shapes the engine's fast kernels accept (mla plan); native: per-layer rope choice, native format only",
    },
    basis: { type: 'string', value: 'weight|activation', defaultText: CONVERT_DEFAULTS.basis, doc: 'latent basis: joint SVD of [K_nope; V] weights, or PCA of calibration activations' },
    'q-rank': { type: 'string', value: 'R', defaultText: 'full-rank query', doc: 'low-rank query (q_a_proj / q_a_layernorm / q_b_proj)' },
    'latent-norm': { type: 'boolean', default: false, doc: 'add kv_a_layernorm (stock engines require it; changes the function until distillation)' },
    'nope-init': { type: 'string', value: 'mean-rotation|identity', defaultText: CONVERT_DEFAULTS.nopeInit, doc: 'no-rope path init of a rotary pair that leaves the rope key' },
    'nope-keys': {
      type: 'string', value: 'residual|drop', defaultText: CONVERT_DEFAULTS.nopeKeys,
      doc: "the rope pairs' dims in the no-rope path: kept minus what the rope key carries (d_n = head dim), or dropped (d_n = head dim − rope dims)",
    },
    'keep-layers': { type: 'string', value: 'I,J,...|auto:K', doc: 'layers kept as original attention (a hybrid model); auto:K keeps the K layers whose conversion costs most calibration KL' },
    'share-latent': {
      type: 'string', value: 'G', field: 'shareLatent', defaultText: 'none: every layer its own latent',
      doc: "xKV: groups of G adjacent converted layers share one latent cache (each group's rank = the sum of its layers' ranks; not exportable)",
    },
    search: { type: 'boolean', default: false, doc: 'choose the rope/latent split, the no-rope init and per-layer ranks by calibration KL at the same KV budget' },
    'search-samples': { type: 'string', value: 'N', field: 'searchSamples', default: String(SEARCH_DEFAULTS.samples), doc: "teacher samples (held out from calibration) the search and auto:K measure KL on" },
    calib: { type: 'string', value: 'FILE', field: 'calib.file', defaultText: "the teacher's own samples", doc: 'calibration text' },
    'calib-samples': { type: 'string', value: 'N', field: 'calib.samples', defaultText: `${CONVERT_DEFAULTS.calib.samples}, fewer (≥ ${MIN_DEFAULT_CALIB_SAMPLES}) where that costs over ${CALIB_FLOP_BUDGET / 1e12} TFLOP of teacher forward`, doc: 'calibration sequences' },
    'calib-len': { type: 'string', value: 'T', field: 'calib.length', default: String(CONVERT_DEFAULTS.calib.length), doc: 'calibration sequence length in tokens' },
    seed: { type: 'string', value: 'S', field: 'calib.seed', default: String(CONVERT_DEFAULTS.calib.seed), doc: 'seed of the calibration samples' },
    dtype: {
      type: 'string', value: 'f32|bf16', defaultText: "the input's: unchanged tensors as stored, converted ones as their layer's q_proj",
      doc: 'weight dtype written',
    },
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
  // A recipe fixes its fields; the same field from a flag too would silently make it someone else's recipe.
  let recipe: (typeof RECIPE_OPTIONS)[keyof typeof RECIPE_OPTIONS] | undefined;
  if (v.recipe !== undefined) {
    if (!isRecipe(v.recipe)) throw new UserError(`--recipe: expected ${RECIPES.join(', ')}, got '${v.recipe}'`);
    recipe = RECIPE_OPTIONS[v.recipe];
    for (const flag of ['rope-method', 'basis', 'nope-init', 'nope-keys'] as const) {
      if (v[flag] !== undefined) throw new UserError(`--recipe ${v.recipe} sets --${flag} itself; drop --${flag} (or --recipe and give every option)`);
    }
  }
  const ropeMethod = (v['rope-method'] ?? recipe?.ropeMethod ?? CONVERT_DEFAULTS.ropeMethod) as RopeMethod;
  if (!ROPE_METHODS.includes(ropeMethod)) throw new UserError(`--rope-method: expected ${ROPE_METHODS.join(', ')}, got '${ropeMethod}'`);
  const target = v.target as Target | undefined;
  if (target !== undefined && !TARGETS.includes(target)) throw new UserError(`--target: expected ${TARGETS.join(', ')}, got '${target}'`);
  const basis = (v.basis ?? recipe?.basis ?? CONVERT_DEFAULTS.basis) as BasisMethod;
  if (!BASIS_METHODS.includes(basis)) throw new UserError(`--basis: expected ${BASIS_METHODS.join(', ')}, got '${basis}'`);
  const nopeInit = (v['nope-init'] ?? recipe?.nopeInit ?? CONVERT_DEFAULTS.nopeInit) as NopeInit;
  if (!NOPE_INITS.includes(nopeInit)) throw new UserError(`--nope-init: expected ${NOPE_INITS.join(', ')}, got '${nopeInit}'`);
  const nopeKeys = (v['nope-keys'] ?? recipe?.nopeKeys ?? CONVERT_DEFAULTS.nopeKeys) as NopeKeys;
  if (!NOPE_KEYS.includes(nopeKeys)) throw new UserError(`--nope-keys: expected ${NOPE_KEYS.join(', ')}, got '${nopeKeys}'`);
  const freqfold = v.freqfold === undefined ? recipe?.freqfold ?? 1
    : v.freqfold === 'auto' ? 'auto' : num(v.freqfold, 'freqfold', 1, positiveInt, '1, a multiple of head_dim/rope_dim that divides the rope pairs (2, 4, 8, … for rope dim = head dim / 2), or auto');
  const auto = v['keep-layers']?.startsWith('auto:') ?? false;
  const keepLayers = v['keep-layers'] && !auto
    ? v['keep-layers'].split(',').map((s) => num(s.trim(), 'keep-layers', 0, nonNegativeInt, 'a comma-separated list of layer indices or auto:K'))
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
    nopeKeys,
    freqfold,
    kvBalance: recipe?.kvBalance ?? 'energy',
    keepLayers,
    calib: {
      file: v.calib,
      // Left out: the default, which convertCommand budgets by the teacher's size once its header is read.
      samples: v['calib-samples'] === undefined ? CONVERT_DEFAULTS.calib.samples : num(v['calib-samples'], 'calib-samples', 0, positiveInt, 'a positive integer'),
      length: numFlag(v['calib-len'], 'calib-len', (n) => Number.isInteger(n) && n >= 2, 'an integer ≥ 2'),
      seed: numFlag(v.seed, 'seed', nonNegativeInt, 'a non-negative integer'),
    },
  };
}

/** --keep-layers auto:K → K (null when the layers are given). */
function autoKeepCount(v: ConvertValues): number | null {
  const s = v['keep-layers'];
  if (!s?.startsWith('auto:')) return null;
  return num(s.slice(5), 'keep-layers', 0, positiveInt, 'auto:K with K a positive integer');
}

/** The search's candidates, the chosen plan against the uniform one. */
function searchReport(r: SearchResult): string {
  const ranks = (c: SearchResult['chosen']) => {
    const rs = c.ranks.map((x) => x ?? 'kept');
    return rs.every((x) => x === rs[0]) ? String(rs[0]) : rs.join(',');
  };
  const rows = r.tried.map((c) => [c.ropeDim, ranks(c), c.nopeInit, c.compression.toFixed(2) + '×', c.kl.toFixed(5), c === r.chosen ? 'chosen' : c === r.uniform ? 'uniform (no search)' : '']);
  return [
    table(['d_r', 'r_kv', 'no-rope init', 'compression', 'calibration KL', ''], rows),
    `search: d_r ${r.chosen.ropeDim}, r_kv ${ranks(r.chosen)}, ${r.chosen.nopeInit}: calibration KL ${r.chosen.kl.toFixed(5)} against ${r.uniform.kl.toFixed(5)} for the uniform plan (${(100 * (1 - r.chosen.kl / r.uniform.kl)).toFixed(1)}% lower)`,
    '',
  ].join('\n');
}

/** The per-layer table and totals printed by convert. */
export function convertReport(r: ConvertSummary): string {
  const rows = r.layers.map((l) => [
    l.layer, l.kind, l.kvRank ?? '-', l.ropeDim ?? '-', l.kvRank === null ? '-' : `${(100 * l.energyKept).toFixed(2)}%`, // no rank: a kept layer
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
  const dtype = values.dtype === undefined ? undefined : values.dtype === 'bf16' ? 'BF16' : values.dtype === 'f32' ? 'F32' : null;
  if (dtype === null) throw new UserError(`--dtype: expected f32 or bf16, got '${values.dtype}'`);
  const opts = convertOptionsFrom(values);
  // Everything cheap first: the output must be writable and away from the inputs before minutes of conversion.
  checkOutput({ flag: '--out', out: values.out, inputs: [path, values.tokenizer, opts.calib.file], kind: 'dir', overwrite: values.overwrite ?? false });
  if (opts.calib.file) requireRegularFile(opts.calib.file, `--calib ${opts.calib.file}`);
  const be = resolveBackend(values.backend);
  // The teacher's tensors are read one layer at a time; the whole model is loaded only when calibration or a search
  // needs its forward pass.
  const opened = openWeights(path, { tokenizer: values.tokenizer });
  try {
    convertOpened(values, path, opts, dtype, be, opened);
  } finally {
    opened.weights.close();
  }
}

function convertOpened(values: ConvertValues, path: string, opts: ConvertOptions, dtype: 'F32' | 'BF16' | undefined, be: Backend, opened: OpenedWeights): void {
  const K = autoKeepCount(values);
  // Checked before any model is loaded or searched.
  const share = values['share-latent'] === undefined ? null : num(values['share-latent'], 'share-latent', 0, (n) => Number.isInteger(n) && n >= 2, 'an integer ≥ 2 (layers per shared latent)');
  if (share !== null && (K !== null || values.search)) throw new UserError('--share-latent: not with --search or --keep-layers auto:K (they plan per-layer latents)');
  if (K !== null || values.search) requireBudget(opts);
  if (values.search && opts.freqfold !== 1) {
    throw new UserError(`--freqfold ${String(opts.freqfold)}: not with --search (each rope dim it tries would need its own folds); search with --freqfold 1${values.recipe ? ` (--recipe ${values.recipe} sets auto)` : ''}`);
  }
  checkFoldOptions(opened.config, targetOptions(opened.config, opts).opts);
  const autoFold = opts.freqfold === 'auto';
  const calibrates = K !== null || values.search || autoFold || values['share-latent'] !== undefined || needsCalibration(targetOptions(opened.config, opts).opts);
  const notes: string[] = [];
  if (calibrates && values['calib-samples'] === undefined) {
    // The default calibration is budgeted by the teacher's size (convert/defaults.ts), and says so when it is cut.
    const n = defaultCalibSamples(opened.config, opts.calib.length);
    if (n !== opts.calib.samples) {
      notes.push(`calibration: ${n} sequences of ${opts.calib.length} tokens, not ${opts.calib.samples}: the default is capped at ${CALIB_FLOP_BUDGET / 1e12} TFLOP of teacher forward (${(forwardFlopsPerToken(opened.config) / 1e9).toFixed(2)} GFLOP per token here); give {calib.samples} N to choose`);
      opts.calib.samples = n;
    }
  }
  const model = calibrates ? openModel(path, { tokenizer: values.tokenizer }, be).model : null;
  const searchSamples = numFlag(values['search-samples'], 'search-samples', positiveInt, 'a positive integer');
  // Sampled sequences tick once when drawn and once when their statistics are taken; the search draws its own too.
  const calibLabel = opts.calib.file ? 'calibrate' : 'calibrate (teacher samples)';
  const calibBar = (extra = 0) => new Progress(calibLabel, opts.calib.samples * (opts.calib.file ? 1 : 2) + extra, 'seq');
  // Without a search, calibration is one pass that ticks per forward step: the bar's first line, after one measured
  // step, carries the ETA.
  const calibSteps = calibrationProgress(opened.config.maxPositions, opts.calib);
  const calibOnePass = (): ProgressSink => {
    const bar = new Progress(calibLabel, calibSteps.total, calibSteps.unit);
    // The layer bar's clock starts when calibration ends, so its rate and ETA are the layers' own.
    return { tick: (n, extra) => bar.tick(n, extra), end: () => { bar.end(); layerBar = newLayerBar(); } };
  };
  const newLayerBar = (): Progress => new Progress('convert', opened.config.numLayers, 'layer');
  let layerBar = newLayerBar();
  const layers: ProgressSink = { tick: (n, extra) => layerBar.tick(n, extra), end: () => layerBar.end() };
  let stats: LayerStats[] | undefined;
  let before = '';
  const extraJson: Record<string, unknown> = {};
  if (K !== null || values.search || autoFold) {
    const s = new PlanSearch(model!, opened.tokenizer, opts, { samples: searchSamples }, calibBar(opts.calib.file ? 0 : searchSamples));
    stats = s.stats;
    if (autoFold) {
      const D = opened.config.layers.map(teacherAttention).find((a) => a !== null)?.headDim ?? 0;
      const fold = s.freqfold(opts, new Progress('freqfold auto', Math.max(1, autoFolds(D, opts.ropeDim ?? D / 2).length), 'conversion'));
      opts.freqfold = fold.freqfold;
      extraJson.freqfold = fold;
      before += `freqfold auto: ${fold.freqfold} (calibration KL of the full-rank RoRoPE conversion: ${fold.tried.map((t) => `${t.freqfold}: ${t.kl.toFixed(5)}`).join(', ')})\n`;
    }
    if (K !== null) {
      const auto = s.autoKeep(opts, K, new Progress(`keep-layers auto:${K}`, opened.config.numLayers + 1, 'conversion'));
      opts.keepLayers = auto.keep;
      extraJson.auto_keep = { keep: auto.keep, layer_kl: auto.cost };
      before += `auto:${K}: keeping layers ${auto.keep.join(', ')} as original attention; calibration KL of converting each layer alone: ${auto.cost.map((c, l) => `${l}: ${c.toFixed(5)}`).join(', ')}\n`;
    }
    if (values.search) {
      const bar = new Progress('search', s.planScores(opts), 'conversion');
      const found = s.plan(opts, bar);
      Object.assign(opts, found.options);
      extraJson.search = { chosen: found.chosen, uniform: found.uniform, tried: found.tried };
      before += searchReport(found);
    }
  }
  let r: ConvertSummary;
  if (share !== null) {
    // Cross-layer sharing factors groups of layers together: it runs on the loaded model and saves from memory.
    const shared = convertSharedLatent(model!, opened.tokenizer, opts, share, { calib: calibBar(), layers });
    saveConverted(values.out!, opts, shared, { source: path, dtype, overwrite: values.overwrite, copyFiles: tokenizerFiles(path, values.tokenizer) });
    r = shared;
  } else {
    r = convertToDir(
      { config: opened.config, be, weights: opened.weights, model }, opened.tokenizer, opts, values.out!,
      { source: path, dtype, overwrite: values.overwrite, copyFiles: tokenizerFiles(path, values.tokenizer) },
      { calib: needsCalibration(opts) && !stats ? calibOnePass() : { tick() {}, end() {} }, layers }, { stats },
    );
  }
  r = { ...r, notes: [...notes, ...r.notes] };
  if (values.json) {
    process.stdout.write(JSON.stringify({ out: values.out, calibration: calibrates ? { samples: opts.calib.samples, length: opts.calib.length, file: opts.calib.file ?? null } : null, layers: r.layers.map(({ spectrum: _s, ...l }) => l), teacher_kv_bytes_per_token: r.teacherKvBytesPerToken, kv_bytes_per_token: r.studentKvBytesPerToken, compression: r.compression, ...extraJson, notes: r.notes.map((n) => cliText(convertSpec, n)) }, null, 2) + '\n');
  } else {
    process.stdout.write(before + convertReport(r) + `\nwrote ${values.out}\n`);
  }
}

// Conversion of a GQA/MHA model into MLA (DeepSeek-V3 parameterisation), layer by layer:
//   1. rope: pick the rotary components the shared rope key keeps (rope-select.ts), with their original frequencies;
//   2. no-rope keys: each kv head's keys minus what the rope key carries (exact when every component is kept);
//   3. latent: factor [K_nope; V] ≈ B·A (basis.ts) at the planned rank; A and the rope rows form kv_a_proj_with_mqa,
//      B (repeated per query head) forms kv_b_proj with per-head rows [k_nope (D) | v (D)];
//   4. query: the teacher's rows for the no-rope part and u-weighted pair rows for the rope part, scaled so the
//      student's 1/sqrt(Dn+Dr) softmax scale equals the teacher's 1/sqrt(D); o_proj is unchanged.
// One path for every caller: prepareConversion (options, ranks, calibration, rope pairs: the output's layout) then
// runConversion, which reads one teacher layer at a time (Teacher.weights) and hands the output tensors in order to a
// sink: convert() keeps them in memory, convert/stream.ts writes them to a model directory as they come.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, KD = Hkv·D, R kv rank, Dr rope dims, Rq q rank.

import { Tensor } from '../tensor/tensor.js';
import type { GqaAttention, LayerAttention, MlaAttention, ModelConfig } from '../model/config.js';
import { kvValuesPerToken, kvBytesPerToken } from '../model/config.js';
import type { Model } from '../model/model.js';
import { layerPrefix, modelTensors } from '../model/weights.js';
import type { Backend } from '../tensor/backend.js';
import { MemorySource, type WeightSource } from '../io/source.js';
import type { StorageDtype } from '../io/dtype.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError, UserError } from '../errors.js';
import { NonFiniteError } from '../model/finite.js';
import { NonFiniteInputError, elementIndex, firstNonFinite, nonFiniteName } from '../tensor/finite.js';
import { energyRank, roundUp } from '../linalg/pca.js';
import { calibrate, crossMoment, identityStats, secondMomentDiag, type CalibrationOptions, type LayerStats } from './calibrate.js';
import {
  componentFor, componentTerms, pairScores, selectRope, sharedPairs, ropeEnergies, ropeExpressibility, type RopeComponent, type RopeEnergies, type RopeMethod,
} from './rope-select.js';
import { autoFolds, checkFreqfold, foldComponents, foldPairs, transmlaBalance, type Freqfold } from './freqfold.js';
import { ropeAccepts, TARGET_RULES, type RopeRule, type Target } from './targets.js';
import { planTarget, ROPE_FORMS } from './plan.js';
import { energyKept, factorize, type BasisInput, type BasisMethod } from './basis.js';
import { addRow, f64, kvHeadOf, pairRows } from './heads.js';
import type { RopePairing } from '../tensor/ops.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { teacherAttention, teacherLayer } from './kinds.js';
import type { AttentionKindName } from '../model/attention/index.js';

export type NopeInit = 'mean-rotation' | 'identity';
export const NOPE_INITS: readonly NopeInit[] = ['mean-rotation', 'identity'];

/** What the no-rope path keeps of the rope pairs the shared key takes: 'residual' keeps all D dims of every head, each
 *  minus what the rope key carries (d_n = D; exact when every component is kept); 'drop' removes those pairs' dims
 *  from the no-rope keys and queries (d_n = D − dims of the kept pairs; X-EcoMLA's and MHA2MLA's recipe). */
export type NopeKeys = 'residual' | 'drop';
export const NOPE_KEYS: readonly NopeKeys[] = ['residual', 'drop'];

/** How BKV-PCA balances the no-rope keys against the values before the joint PCA: 'energy' (ours) divides the keys
 *  by sqrt(E‖K_nope‖² / E‖V‖²); 'transmla' by TransMLA's ratio of mean column norms in its rotated key basis
 *  (freqfold.ts transmlaBalance), with its 1 % damping of the PCA's moment. */
export type KvBalance = 'energy' | 'transmla';

export type RankPlan =
  | { kind: 'rank'; rank: number }
  | { kind: 'ratio'; ratio: number }
  | { kind: 'energy'; delta: number }
  /** One kv rank per layer (kept layers' entries are ignored): what `--search` chooses. */
  | { kind: 'ranks'; ranks: number[] };

export interface ConvertOptions {
  plan: RankPlan;
  /** Rope dims of the shared key (even); default D/2. */
  ropeDim?: number;
  ropeMethod: RopeMethod;
  /** Which frequencies the layers may keep (targets.ts): 'free' per layer (native only), 'geometric' (default:
   *  the same pairs in every layer, a geometric run, exportable to GGUF and transformers) or 'unscaled' (vLLM, SGLang). */
  ropeRule?: RopeRule;
  /** The engine the model is for (targets.ts): its shape rule picks the kv rank and rope dims (plan.ts), its rope rule
   *  the rope choice, and stock targets get the latent norm. */
  target?: Target;
  basis: BasisMethod;
  /** Low-rank query (q_a_proj / q_a_layernorm / q_b_proj); null keeps a full q_proj. */
  qRank: number | null;
  latentNorm: boolean;
  /** How the no-rope path treats the rotations it drops: 'mean-rotation' replaces each dropped pair's rotation by its
   *  expectation under the teacher's attention distances (calibrated); 'identity' drops it (X-EcoMLA, MHA2MLA). */
  nopeInit: NopeInit;
  /** Whether the rope pairs' dims stay in the no-rope path (residual) or leave it (drop); default residual. */
  nopeKeys?: NopeKeys;
  /** TransMLA's FreqFold (freqfold.ts): 1 (default) keeps per-pair components; F > 1 folds F adjacent frequencies
   *  (rope method transmla, residual no-rope keys); 'auto' must be resolved first (search.ts PlanSearch.freqfold). */
  freqfold?: Freqfold;
  /** BKV-PCA's K/V balancing (activation basis); default 'energy'. */
  kvBalance?: KvBalance;
  /** Layers kept as original attention. */
  keepLayers: number[];
  calib: CalibrationOptions;
}

export interface LayerReport {
  layer: number;
  kind: AttentionKindName;
  kvRank: number | null;
  ropeDim: number | null;
  /** Fraction of the basis energy kept (1 for kept layers). */
  energyKept: number;
  /** Energy of each basis direction (σ² or PCA eigenvalues), descending; empty for kept layers. */
  spectrum: number[];
  kvValuesPerToken: number;
  teacherValuesPerToken: number;
}

export interface ConvertResult {
  config: ModelConfig;
  weights: Map<string, Tensor>;
  layers: LayerReport[];
  teacherKvBytesPerToken: number;
  studentKvBytesPerToken: number;
  compression: number;
  /** Facts the user must know (function-changing options, export limits). */
  /** What the conversion changed; option references are written {field} (errors.ts renderOptionRefs). */
  notes: string[];
  /** The teacher rope pairs every converted layer keeps (null: each layer its own, rope rule 'free'). */
  ropePairs: number[] | null;
}

/** Work a caller already did for this model and options (a search converts the same teacher many times). */
export interface ConvertGiven {
  /** Calibration statistics per layer (used when the options need calibration). */
  stats?: LayerStats[];
  /** The shared rope pairs (instead of choosing them from the converted layers' scores). */
  ropePairs?: number[];
}

/** Does this conversion need calibration activations? */
export function needsCalibration(o: ConvertOptions): boolean {
  return o.ropeMethod !== 'ecomla' || o.basis === 'activation' || o.latentNorm || o.qRank !== null || o.nopeInit === 'mean-rotation';
}

/**
 * Options within a target's rules: its accepted shape with the highest compression (or the requested one, checked),
 * its rope rule, the latent norm for stock engines; notes say what was chosen and what cannot be reached.
 */
export function targetOptions(cfg: ModelConfig, opts: ConvertOptions): { opts: ConvertOptions; notes: string[] } {
  if (!opts.target) return { opts, notes: [] };
  const rules = TARGET_RULES[opts.target];
  const notes: string[] = [];
  if ((opts.plan.kind === 'energy' || opts.plan.kind === 'ranks') && rules.uniformRank) {
    throw new OptionError(opts.plan.kind === 'energy' ? 'plan.delta' : 'plan.ranks', undefined, `gives each layer its own kv rank, but ${rules.engine} has one kv_lora_rank: use {plan.rank} or {plan.ratio} with {target} ${opts.target}`);
  }
  const plan = planTarget(cfg, opts.target, {
    kvRank: opts.plan.kind === 'rank' ? opts.plan.rank : undefined, ratio: opts.plan.kind === 'ratio' ? opts.plan.ratio : undefined, ropeDim: opts.ropeDim,
  });
  const out: ConvertOptions = { ...opts, ropeRule: rules.rope, latentNorm: opts.latentNorm || rules.latentNorm };
  if (rules.shapes) {
    const c = plan.chosen;
    if (!c) {
      const why = plan.options.map((o) => `${o.kvRank}+${o.ropeDim}: ${o.problems.join('; ')}`).join(' | ');
      throw new UserError(`--target ${opts.target}: ${rules.engine} accepts only ${plan.options.map((o) => `${o.kvRank}+${o.ropeDim}`).join(', ')} (${rules.shapeWhy}), and none fits this model: ${why}`);
    }
    out.plan = { kind: 'rank', rank: c.kvRank };
    out.ropeDim = c.ropeDim;
    notes.push(`--target ${opts.target}: kv rank ${c.kvRank} + rope dims ${c.ropeDim} (${c.compression.toFixed(2)}× of the teacher's cache), the accepted shape with the highest compression (${rules.shapeWhy})`);
    if (opts.plan.kind === 'ratio' && opts.plan.ratio > c.compression + 1e-9) {
      notes.push(`a KV compression of ${opts.plan.ratio}× cannot be reached on ${rules.engine}: its shapes give at most ${c.compression.toFixed(2)}× for this model`);
    }
  }
  if (!opts.latentNorm && rules.latentNorm) notes.push(`--target ${opts.target}: --latent-norm added (${rules.engine} always applies kv_a_layernorm)`);
  notes.push(...plan.notes.map((n) => `--target ${opts.target}: ${n}`));
  return { opts: out, notes };
}

/** The teacher a conversion reads: its config, a backend for the linear algebra, its tensors read on demand (a
 *  checkpoint's files, or a model in memory), and the loaded model when calibration needs its forward pass. */
export interface Teacher {
  config: ModelConfig;
  be: Backend;
  weights: WeightSource;
  /** Needed when needsCalibration(opts); null for a data-free conversion, which reads one layer at a time. */
  model: Model | null;
}

/** An output tensor as planned before any layer is converted: shapes are upper bounds where a kv rank is chosen from
 *  the spectrum (an energy plan); dtype is the stored dtype of the teacher tensor it comes from (for a converted one,
 *  that of the layer's q_proj). */
export interface PlannedTensor {
  name: string;
  shape: number[];
  dtype: StorageDtype;
}

/** Where a conversion's tensors go, in the order of `planned` (modelTensors of the converted config). */
export interface ConvertSink {
  /** A tensor the conversion made (f32 values). */
  put(name: string, t: Tensor): void;
  /** A teacher tensor the conversion leaves unchanged. */
  copy(name: string): void;
}

/** What a conversion reports (ConvertResult without the weights, for a conversion written straight to files). */
export type ConvertSummary = Omit<ConvertResult, 'weights'>;

/** A conversion ready to run: options checked, ranks planned, calibration done, rope pairs chosen. */
export interface PreparedConversion {
  teacher: Teacher;
  opts: ConvertOptions;
  /** Every output tensor in order (see PlannedTensor). */
  planned: PlannedTensor[];
  ropeDim: number;
  convertSet: boolean[];
  ranks: (number | null)[];
  stats: LayerStats[] | null;
  shared: number[] | null;
  energiesOf: (RopeEnergies | null)[];
  notes: string[];
}

/**
 * Check the options against the teacher, plan every layer's rank, run the calibration when the options need it and
 * choose the shared rope pairs: everything before the first layer is converted, so a writer can lay out its output.
 */
export function prepareConversion(
  teacher: Teacher, tokenizer: Tokenizer | null, opts0: ConvertOptions, calibProgress: ProgressSink = silentProgress, given: ConvertGiven = {},
): PreparedConversion {
  const cfg = teacher.config;
  const targeted = targetOptions(cfg, opts0);
  const opts = targeted.opts;
  const C = cfg.hiddenSize;
  const H = cfg.numHeads;
  for (const l of opts.keepLayers) {
    if (!Number.isInteger(l) || l < 0 || l >= cfg.numLayers) throw new OptionError('keepLayers', undefined, `layer ${l} outside 0..${cfg.numLayers - 1}`);
  }
  cfg.layers.forEach((a, i) => {
    teacherLayer(a, i); // a UserError for a kind that cannot be a conversion source (convert/kinds.ts)
  });
  const teacherLayers = cfg.layers as GqaAttention[];
  const D0 = teacherLayers[0]!.headDim;
  const ropeDim = opts.ropeDim ?? D0 / 2;
  if (!Number.isInteger(ropeDim) || ropeDim < 2 || ropeDim % 2 !== 0) throw new OptionError('ropeDim', undefined, `expected an even number ≥ 2, got ${ropeDim}`);
  const convertSet = cfg.layers.map((_, i) => !opts.keepLayers.includes(i));
  const fold = foldOf(opts);
  checkFoldOptions(cfg, opts);
  if ((opts.kvBalance ?? 'energy') === 'transmla' && (opts.ropeMethod !== 'transmla' || opts.basis !== 'activation')) {
    throw new OptionError('kvBalance', 'transmla', `balances TransMLA's rotated keys: needs {ropeMethod} transmla and {basis} activation, got ${opts.ropeMethod} and ${opts.basis}`);
  }
  const planned = planRanks(cfg, opts.plan, ropeDim, convertSet);
  // Ranks beyond what the factorisation has are refused with the maximum: a clamp would report a rank it did not use.
  const maxRanks = teacherLayers.map((a) => {
    const KD = a.numKvHeads * a.headDim;
    return opts.basis === 'weight' ? Math.min(2 * KD, C) : 2 * KD;
  });
  teacherLayers.forEach((a, l) => {
    if (!convertSet[l]) return;
    const maxR = maxRanks[l]!;
    const r = planned[l];
    if (r !== null && r !== undefined && r > maxR) {
      const [field, value] = opts.plan.kind === 'ratio' ? ['plan.ratio', opts.plan.ratio] : [opts.plan.kind === 'ranks' ? 'plan.ranks' : 'plan.rank', undefined];
      throw new OptionError(field, value, `a kv rank of ${r} exceeds the maximum ${maxR} for layer ${l} (2·num_kv_heads·head_dim${opts.basis === 'weight' ? ', at most hidden_size' : ''})`);
    }
    const drop = opts.nopeKeys === 'drop';
    const maxQ = Math.min(H * (a.headDim + (drop ? 0 : ropeDim)), C);
    if (opts.qRank !== null && opts.qRank > maxQ) {
      throw new OptionError('qRank', undefined, `expected at most ${maxQ} (min(heads·(head_dim${drop ? '' : ' + rope dims'}), hidden_size) for layer ${l}), got ${opts.qRank}`);
    }
  });

  let stats: LayerStats[] | null = null;
  if (needsCalibration(opts)) {
    const model = teacher.model;
    if (!model) throw new Error('convert: these options need calibration, which needs the teacher model loaded (Teacher.model)');
    stats = given.stats ?? calibrate(model, tokenizer, opts.calib, calibProgress);
  }
  const notes: string[] = [...targeted.notes];
  const rule = opts.ropeRule ?? 'geometric';
  // Shared rope pairs: every converted layer's pair scores, then one arithmetic run of pairs for all layers.
  let shared: number[] | null = null;
  const energiesOf: (RopeEnergies | null)[] = cfg.layers.map(() => null);
  if (fold > 1) {
    // FreqFold fixes the frequencies (pairs 0, c, 2c, …: one geometric run) whatever the rope rule.
    teacherLayers.forEach((a, l) => {
      if (convertSet[l]) energiesOf[l] = layerEnergies(teacher, l, a, stats![l]!);
    });
    shared = foldPairs(D0, ropeDim);
    notes.push(`rope: freqfold ${fold} (TransMLA): folds of ${fold} adjacent frequencies, ${(fold * ropeDim) / D0} principal component(s) of each fold's ${fold}·num_kv_heads-dim key PCA kept at teacher pairs ${shared.join(', ')} (one frequency per component: its fold's pair i·${fold} + m·${D0 / ropeDim}); exact only where a fold's frequencies are equal.`);
  } else if (rule !== 'free') {
    const scores: number[][] = [];
    teacherLayers.forEach((a, l) => {
      if (!convertSet[l]) return;
      if (ropeDim / 2 > a.headDim / 2) throw new OptionError('ropeDim', ropeDim, `at most ${a.headDim} rope dims in layer ${l} (head dim ${a.headDim}) when every layer keeps the same pairs`);
      const e = opts.ropeMethod === 'ecomla' ? emptyEnergies : layerEnergies(teacher, l, a, stats![l]!);
      energiesOf[l] = e;
      scores.push(pairScores({ method: opts.ropeMethod, H, Hkv: a.numKvHeads, D: a.headDim, energies: e, linalg: teacher.be.linalg }));
    });
    const choice = given.ropePairs
      ? { pairs: given.ropePairs, exact: ropeAccepts(rule, given.ropePairs.map((j) => cfg.ropeInvFreq[j]!), cfg), acceptedRuns: 1 }
      : sharedPairs(scores, ropeDim / 2, cfg.ropeInvFreq, (f) => ropeAccepts(rule, f, cfg));
    shared = choice.pairs;
    notes.push(
      choice.exact
        ? `rope: every layer keeps teacher pairs ${shared.join(', ')} (${ROPE_FORMS[rule]}, one ${opts.ropeMethod} component each; best of ${choice.acceptedRuns} exportable runs): exact in stock engines.`
        : `rope: no run of ${ropeDim / 2} teacher pairs has frequencies expressible as ${ROPE_FORMS[rule]} (rope scaling bends them); kept pairs ${shared.join(', ')}, the nearest run: export fits the nearest geometric run and reports its logit error.`,
    );
  }

  // The output's tensors, laid out before any layer is converted: a rank chosen from the spectrum is at most maxRanks;
  // 'drop' removes the kept pairs' dims from the no-rope path (all of them distinct when shared, else at most D).
  const drop = opts.nopeKeys === 'drop';
  const bound: LayerAttention[] = teacherLayers.map((a, l) => {
    if (!convertSet[l]) return a;
    const D = a.headDim;
    const Dn = drop && shared && new Set(shared).size === shared.length ? D - ropeDim : D;
    const Dqs = (drop ? Dn : D) + ropeDim;
    return {
      kind: 'mla', kvRank: planned[l] ?? maxRanks[l]!, ropeDim, nopeDim: Dn, vDim: D,
      qRank: opts.qRank === null ? null : Math.min(opts.qRank, H * Dqs, C), latentNorm: opts.latentNorm, bias: a.qkvBias, ropeInvFreq: [],
    };
  });
  const outputTensors = modelTensors({ ...cfg, layers: bound }).map((spec) => {
    const m = /^model\.layers\.(\d+)\.self_attn\.(?!o_proj\.)/.exec(spec.name);
    const from = m && convertSet[Number(m[1])] ? `${layerPrefix(Number(m[1]))}.self_attn.q_proj.weight` : spec.name;
    return { name: spec.name, shape: spec.shape, dtype: teacher.weights.info(from).dtype };
  });
  return { teacher, opts, planned: outputTensors, ropeDim, convertSet, ranks: planned, stats, shared, energiesOf, notes };
}

/**
 * Convert the prepared teacher layer by layer: each converted layer's attention is read, converted and handed to
 * `sink` with the layer's other tensors (copied), in output order, before the next layer is read; the embedding goes
 * first and the final norm and head last. Memory: one layer's attention in f64 plus what the sink holds.
 */
export function runConversion(prep: PreparedConversion, sink: ConvertSink, progress: ProgressSink = silentProgress): ConvertSummary {
  const { teacher, opts, ropeDim, convertSet, stats, shared, energiesOf } = prep;
  const cfg = teacher.config;
  const C = cfg.hiddenSize;
  const teacherLayers = cfg.layers as GqaAttention[];
  const notes = [...prep.notes];
  const rule = opts.ropeRule ?? 'geometric';
  const layers: LayerAttention[] = [];
  const reports: LayerReport[] = [];
  const geometric = new Set<string>();
  let next = 0; // index into prep.planned of the next tensor to emit
  /** Emit planned tensors up to (not including) the first of layer `upTo` (all of them for upTo = L). */
  const emit = (upTo: number, made: Map<string, Tensor> | null): void => {
    const stop = upTo < cfg.numLayers ? `${layerPrefix(upTo)}.` : null;
    for (; next < prep.planned.length; next++) {
      const name = prep.planned[next]!.name;
      if (stop !== null && name.startsWith(stop)) break;
      const t = made?.get(name);
      if (t) sink.put(name, t);
      else sink.copy(name);
    }
  };
  emit(0, null);

  teacherLayers.forEach((a, l) => {
    const teacherValues = kvValuesPerToken(a);
    if (!convertSet[l]) {
      emit(l + 1, null);
      layers.push(a);
      reports.push({ layer: l, kind: 'gqa', kvRank: null, ropeDim: null, energyKept: 1, spectrum: [], kvValuesPerToken: teacherValues, teacherValuesPerToken: teacherValues });
      progress.tick(1);
      return;
    }
    const st = stats?.[l] ?? identityStats(C);
    let out: LayerOut;
    try {
      out = convertLayer(teacher, l, a, st, opts, ropeDim, prep.ranks[l]!, shared, energiesOf[l] ?? null);
    } catch (e) {
      // An SVD/eigh input went non-finite (an energy overflowed float32 in crossMoment, say): name the layer.
      if (e instanceof NonFiniteInputError) throw new NonFiniteError(`convert: layer ${l}: ${e.message} (built from the layer's weights and calibration statistics)`);
      throw e;
    }
    emit(l + 1, out.tensors);
    layers.push(out.attn);
    const expr = ropeExpressibility(out.attn.ropeInvFreq);
    geometric.add(expr.geometric ? 'geometric' : expr.why!);
    reports.push({
      layer: l, kind: 'mla', kvRank: out.attn.kvRank, ropeDim, energyKept: out.energyKept, spectrum: out.spectrum,
      kvValuesPerToken: kvValuesPerToken(out.attn), teacherValuesPerToken: teacherValues,
    });
    progress.tick(1);
  });
  emit(cfg.numLayers, null);
  progress.end();

  const config: ModelConfig = { ...cfg, arch: 'deepseek_v3', layers };
  if (opts.latentNorm) {
    notes.push('kv_a_layernorm added ({latentNorm}): RMSNorm on the latent changes the function until distillation; its weight is initialised to the latent\'s mean RMS.');
  } else {
    notes.push('no latent norm: exact SVD/PCA factorisation; stock engines (transformers, vLLM, llama.cpp) always apply kv_a_layernorm, so convert with {latentNorm} (and distil) for a stock export.');
  }
  if (opts.qRank !== null) notes.push(`low-rank query (q_a_layernorm) at rank ${opts.qRank}: the RMSNorm changes the function until distillation.`);
  for (const g of rule === 'free' ? geometric : []) {
    notes.push(
      g === 'geometric'
        ? 'rope: each layer keeps a geometric run of the original frequencies (a base and a linear scale): exportable.'
        : `rope: ${g}; the native format keeps the exact frequencies, a stock export cannot express them.`,
    );
  }
  if (opts.keepLayers.length) notes.push(`layers ${opts.keepLayers.join(', ')} kept as original attention (hybrid): a stock DeepSeek-V3 export cannot express it.`);
  const teacherBytes = kvBytesPerToken(cfg, 4);
  const studentBytes = kvBytesPerToken(config, 4);
  return {
    config, layers: reports, teacherKvBytesPerToken: teacherBytes, studentKvBytesPerToken: studentBytes, compression: teacherBytes / studentBytes, notes,
    ropePairs: shared,
  };
}

/** A model in memory as a conversion's teacher (its parameters as the tensors; it also serves calibration). */
export function teacherOf(model: Model): Teacher {
  return { config: model.config, be: model.be, weights: new MemorySource(model.weights(), 'model'), model };
}

/**
 * Convert a GQA/MHA model in memory into MLA (the steps in the file header), returning the converted weights in
 * memory. The converted model shares no buffer with its teacher (training updates weights in place).
 */
export function convert(
  model: Model, tokenizer: Tokenizer | null, opts0: ConvertOptions,
  progress: { calib: ProgressSink; layers: ProgressSink } = { calib: silentProgress, layers: silentProgress },
  given: ConvertGiven = {},
): ConvertResult {
  const teacher = teacherOf(model);
  const prep = prepareConversion(teacher, tokenizer, opts0, progress.calib, given);
  const weights = new Map<string, Tensor>();
  const r = runConversion(prep, {
    put: (name, t) => weights.set(name, t),
    copy: (name) => weights.set(name, teacher.weights.read(name).clone()),
  }, progress.layers);
  return { ...r, weights };
}

/** Per-layer kv rank from the plan (null: chosen later from the spectrum by energy). */
export function planRanks(cfg: ModelConfig, plan: RankPlan, ropeDim: number, convertSet: boolean[]): (number | null)[] {
  const nConv = convertSet.filter(Boolean).length;
  if (nConv === 0) throw new OptionError('keepLayers', undefined, 'keeps every layer; nothing to convert');
  if (plan.kind === 'energy') {
    if (!(plan.delta > 0 && plan.delta <= 1)) throw new OptionError('plan.delta', undefined, `expected a fraction in (0, 1], got ${plan.delta}`);
    return convertSet.map(() => null);
  }
  if (plan.kind === 'ranks') {
    if (plan.ranks.length !== cfg.numLayers) throw new OptionError('plan.ranks', undefined, `expected ${cfg.numLayers} ranks (one per layer), got ${plan.ranks.length}`);
    plan.ranks.forEach((r, l) => {
      if (convertSet[l] && (!Number.isInteger(r) || r < 1)) throw new OptionError('plan.ranks', undefined, `layer ${l}: expected a positive integer, got ${r}`);
    });
    return convertSet.map((c, l) => (c ? plan.ranks[l]! : null));
  }
  if (plan.kind === 'rank') {
    if (!Number.isInteger(plan.rank) || plan.rank < 1) throw new OptionError('plan.rank', undefined, `expected a positive integer, got ${plan.rank}`);
    return convertSet.map(() => plan.rank);
  }
  if (!(plan.ratio >= 1)) throw new OptionError('plan.ratio', undefined, `expected a compression ≥ 1, got ${plan.ratio}`);
  const teacher = cfg.layers.reduce((s, a) => s + kvValuesPerToken(a), 0);
  const kept = cfg.layers.reduce((s, a, i) => s + (convertSet[i] ? 0 : kvValuesPerToken(a)), 0);
  const perLayer = (teacher / plan.ratio - kept) / nConv;
  const rank = Math.round(perLayer - ropeDim);
  if (rank < 1) {
    throw new OptionError('plan.ratio', plan.ratio, `leaves ${perLayer.toFixed(1)} values per layer, not enough for rope dim ${ropeDim} plus a latent; lower the ratio or {ropeDim}`);
  }
  return convertSet.map(() => rank);
}

interface LayerOut {
  attn: MlaAttention;
  /** The tensors the conversion made (o_proj, unchanged, is copied from the teacher). */
  tensors: Map<string, Tensor>;
  energyKept: number;
  spectrum: number[];
}

const emptyEnergies: RopeEnergies = { keyMoment: [], queryEnergy: new Float64Array(0), kMoment: new Float64Array(0) };

/**
 * Refuse a freqfold the options or the model cannot take (before any calibration): a number FreqFold's layout cannot
 * hold for a converted layer's head dim and the rope dim, or a fold with another rope method or 'drop' no-rope keys.
 * 'auto' passes (its folds are chosen from the valid ones).
 */
export function checkFoldOptions(cfg: ModelConfig, opts: ConvertOptions): void {
  const sources = cfg.layers.map((a) => teacherAttention(a));
  const D0 = sources.find((a) => a !== null)?.headDim ?? 0;
  const ropeDim = opts.ropeDim ?? D0 / 2;
  if (opts.freqfold === 'auto') {
    if (opts.ropeMethod !== 'transmla') throw new OptionError('freqfold', 'auto', `folds RoRoPE's per-frequency key PCA: needs {ropeMethod} transmla, got ${opts.ropeMethod}`);
    if (!autoFolds(D0, ropeDim).length) {
      throw new OptionError('freqfold', 'auto', `tries c = head_dim/rope_dim, 2c, 4c, …: the rope dim must divide the head dim (head dim ${D0}, {ropeDim} ${ropeDim}); give {freqfold} 1`);
    }
    return;
  }
  const fold = foldOf(opts);
  if (fold === 1) return;
  sources.forEach((a, l) => {
    if (a && !opts.keepLayers.includes(l)) checkFreqfold(fold, a.headDim, ropeDim);
  });
}

/** The numeric freqfold of options (1 when absent), refused where FreqFold does not apply. */
function foldOf(o: ConvertOptions): number {
  const f = o.freqfold ?? 1;
  if (f === 'auto') {
    throw new OptionError('freqfold', 'auto', 'is chosen by calibration KL before converting: resolve it with PlanSearch.freqfold (convert/search.ts), as mla convert does');
  }
  if (!Number.isInteger(f) || f < 1) throw new OptionError('freqfold', f, 'expected a positive integer or auto');
  if (f > 1 && o.ropeMethod !== 'transmla') throw new OptionError('freqfold', f, `folds RoRoPE's per-frequency key PCA: needs {ropeMethod} transmla, got ${o.ropeMethod}`);
  if (f > 1 && o.nopeKeys === 'drop') throw new OptionError('freqfold', f, "keeps each fold's other components in the no-rope path: needs {nopeKeys} residual");
  return f;
}

/** The teacher model, for the energies that need calibration moments (prepareConversion loaded it when they do). */
function calibrated(teacher: Teacher): Model {
  if (!teacher.model) throw new Error('convert: calibration moments need the teacher model (Teacher.model)');
  return teacher.model;
}

/** A teacher layer's rope energies from its calibration moments (rope-select.ts ropeEnergies). */
function layerEnergies(teacher: Teacher, l: number, a: GqaAttention, st: LayerStats): RopeEnergies {
  const p = `${layerPrefix(l)}.self_attn`;
  const get = (n: string) => f64(teacher.weights.read(`${p}.${n}`));
  const { numKvHeads: Hkv, headDim: D } = a;
  const H = teacher.config.numHeads;
  const model = calibrated(teacher);
  const Wq = get('q_proj.weight');
  const Wk = get('k_proj.weight');
  const bq = a.qkvBias ? get('q_proj.bias') : null;
  const bk = a.qkvBias ? get('k_proj.bias') : null;
  const qDiag = secondMomentDiag(model, st, Wq, bq, H * D);
  return ropeEnergies(teacher.config.ropePairing, H, Hkv, D, qDiag, crossMoment(model, st, Wk, bk, Hkv * D, Wk, bk, Hkv * D));
}

function convertLayer(
  teacher: Teacher, l: number, a: GqaAttention, st: LayerStats, opts: ConvertOptions, Dr: number, plannedRank: number | null,
  shared: number[] | null, sharedEnergies: RopeEnergies | null,
): LayerOut {
  const cfg = teacher.config;
  const linalg = teacher.be.linalg;
  const { hiddenSize: C, numHeads: H, ropePairing: pairing } = cfg;
  const { numKvHeads: Hkv, headDim: D } = a;
  const KD = Hkv * D;
  const p = `${layerPrefix(l)}.self_attn`;
  const get = (n: string) => {
    const w = teacher.weights.read(`${p}.${n}`);
    const vals = f64(w); // bf16/f16 weights widen exactly
    // Weights read from files were checked at load; a model built in code may still carry NaN/±∞ into svd/eigh.
    const i = firstNonFinite(vals);
    if (i >= 0) {
      throw new NonFiniteError(`convert: layer ${l}: tensor ${p}.${n} is ${nonFiniteName(vals[i]!)} at element ${elementIndex(i, w.shape)}; weights must be finite`);
    }
    return vals;
  };
  const Wq = get('q_proj.weight');
  const Wk = get('k_proj.weight');
  const Wv = get('v_proj.weight');
  const bq = a.qkvBias ? get('q_proj.bias') : null;
  const bk = a.qkvBias ? get('k_proj.bias') : null;
  const bv = a.qkvBias ? get('v_proj.bias') : null;

  // 1. Rope components: FreqFold's, the shared pairs (one component each), or this layer's free choice.
  let comps: RopeComponent[];
  const fold = foldOf(opts);
  const balanceEnergies = (): RopeEnergies => sharedEnergies ?? layerEnergies(teacher, l, a, st);
  if (fold > 1) {
    comps = foldComponents(balanceEnergies().kMoment, pairing, Hkv, D, Dr, fold, linalg);
  } else if (shared) {
    const energies = sharedEnergies ?? emptyEnergies;
    comps = shared.map((j) => componentFor({ method: opts.ropeMethod, H, Hkv, D, energies, linalg }, j));
  } else {
    const maxPairs = (D / 2) * (opts.ropeMethod === 'transmla' ? Hkv : 1);
    if (Dr / 2 > maxPairs) {
      throw new OptionError('ropeDim', Dr, `${opts.ropeMethod} can keep at most ${2 * maxPairs} rope dims in layer ${l} (head dim ${D}, ${Hkv} kv heads)`);
    }
    const energies = opts.ropeMethod === 'ecomla' ? emptyEnergies : layerEnergies(teacher, l, a, st);
    comps = selectRope({ method: opts.ropeMethod, count: Dr / 2, H, Hkv, D, energies, linalg });
  }

  // 2. Shared rope key rows and the no-rope remainder of each kv head's keys.
  const kRope = new Float64Array(Dr * C);
  const kRopeBias = new Float64Array(Dr);
  const terms = comps.map((c) => componentTerms(c, Hkv).map((t) => ({ ...t, src: pairRows(pairing, D, t.pair) })));
  comps.forEach((_, pi) => {
    const dst = pairRows(pairing, Dr, pi);
    for (let side = 0; side < 2; side++) {
      for (const { g, src, w } of terms[pi]!) {
        addRow(kRope, dst[side]!, Wk, g * D + src[side]!, C, w);
        if (bk) kRopeBias[dst[side]!]! += w * bk[g * D + src[side]!]!;
      }
    }
  });
  const Kn = Wk.slice();
  const bkn = bk ? bk.slice() : null;
  // Head dims that leave the no-rope path ('drop'): both rows of every kept pair, in every kv head. Zero key rows add
  // nothing to either basis (their up-projection rows come out zero), so the factorisation equals one of the rest.
  const dropped = new Set<number>();
  if ((opts.nopeKeys ?? 'residual') === 'drop') for (const c of comps) for (const r of pairRows(pairing, D, c.pair)) dropped.add(r);
  const keptDims = Array.from({ length: D }, (_, r) => r).filter((r) => !dropped.has(r));
  const Dn = keptDims.length;
  if (Dn === 0) throw new OptionError('nopeKeys', 'drop', `leaves no no-rope dims in layer ${l}: the rope key takes every pair of the head dim ${D}; lower {ropeDim}`);
  if (!dropped.size) comps.forEach((_, pi) => {
    const dst = pairRows(pairing, Dr, pi);
    for (let side = 0; side < 2; side++) {
      for (const { g, src, w } of terms[pi]!) {
        addRow(Kn, g * D + src[side]!, kRope, dst[side]!, C, -w);
        if (bkn) bkn[g * D + src[side]!]! -= w * kRopeBias[dst[side]!]!;
      }
    }
  });
  for (let g = 0; g < Hkv; g++) {
    for (const r of dropped) {
      Kn.fill(0, (g * D + r) * C, (g * D + r + 1) * C);
      if (bkn) bkn[g * D + r] = 0;
    }
  }

  // 3. Latent basis and rank.
  let balance: BasisInput['balance'];
  if (opts.kvBalance === 'transmla') {
    const vDiag = secondMomentDiag(calibrated(teacher), st, Wv, bv, KD);
    balance = { alpha: transmlaBalance(balanceEnergies().kMoment, vDiag, pairing, Hkv, D, Dr, fold, comps, linalg), damping: 0.01, ropeDims: Dr };
  }
  const fact = factorize(opts.basis, { model: teacher.model, Kn, V: Wv, bk: bkn, bv, KD, C, stats: st, linalg, balance });
  let R = plannedRank ?? Math.max(8, roundUp(energyRank(fact.spectrum, (opts.plan as { delta: number }).delta), 8));
  R = Math.min(R, fact.maxRank);
  const { A, a: aBias, Bk, Bv } = fact.build(R);

  const tensors = new Map<string, Tensor>();
  const put = (name: string, shape: number[], data: Float64Array) => tensors.set(`${p}.${name}`, new Tensor(shape, Float32Array.from(data)));
  const hasBias = a.qkvBias;

  // kv_a_proj_with_mqa: rows [latent (R) | rope key (Dr)].
  const kva = new Float64Array((R + Dr) * C);
  kva.set(A, 0);
  kva.set(kRope, R * C);
  put('kv_a_proj_with_mqa.weight', [R + Dr, C], kva);
  if (hasBias) {
    const b = new Float64Array(R + Dr);
    if (aBias) b.set(aBias, 0);
    b.set(kRopeBias, R);
    put('kv_a_proj_with_mqa.bias', [R + Dr], b);
  }
  // kv_b_proj: per query head h rows [k_nope of kv head g(h) (Dn kept dims) | v of g(h) (D)].
  const kvb = new Float64Array(H * (Dn + D) * R);
  for (let h = 0; h < H; h++) {
    const g = kvHeadOf(h, H, Hkv);
    const o = h * (Dn + D) * R;
    keptDims.forEach((r, i) => kvb.set(Bk.subarray((g * D + r) * R, (g * D + r + 1) * R), o + i * R));
    kvb.set(Bv.subarray(g * D * R, (g + 1) * D * R), o + Dn * R);
  }
  put('kv_b_proj.weight', [H * (Dn + D), R], kvb);
  if (opts.latentNorm) {
    let tr = 0;
    for (const e of secondMomentDiag(calibrated(teacher), st, A, aBias, R)) tr += e;
    put('kv_a_layernorm.weight', [R], new Float64Array(R).fill(Math.sqrt(tr / R) || 1));
  }

  // 4. Query: per head [no-rope rows (D) | rope rows (Dr)], scaled to keep the teacher's softmax temperature
  //    (the student's is 1/sqrt(Dn + Dr)); dropped no-rope rows are removed at the end.
  const Dq = D + Dr;
  const qs = Math.sqrt((Dn + Dr) / D);
  let Q = new Float64Array(H * Dq * C);
  let qb = bq ? new Float64Array(H * Dq) : null;
  for (let h = 0; h < H; h++) {
    const g = kvHeadOf(h, H, Hkv);
    for (let r = 0; r < D; r++) {
      addRow(Q, h * Dq + r, Wq, h * D + r, C, qs);
      if (qb && bq) qb[h * Dq + r] = qs * bq[h * D + r]!;
    }
    comps.forEach((_, pi) => {
      const dst = pairRows(pairing, Dr, pi);
      for (let side = 0; side < 2; side++) {
        let first = true;
        for (const { g: gt, src, w } of terms[pi]!) {
          if (gt !== g) continue;
          addRow(Q, h * Dq + D + dst[side]!, Wq, h * D + src[side]!, C, qs * w);
          const i = h * Dq + D + dst[side]!;
          const v = bq ? qs * w * bq[h * D + src[side]!]! : 0;
          if (qb) qb[i] = first ? v : qb[i]! + v;
          first = false;
        }
      }
    });
  }
  if (opts.nopeInit === 'mean-rotation') applyMeanRotation(Q, qb, st, cfg.ropeInvFreq, pairing, H, D, Dq, C);
  const Dqs = Dn + Dr;
  if (dropped.size) {
    // Per head: the kept no-rope rows, then the Dr rope rows.
    const rows = Array.from({ length: H }, (_, h) => [...keptDims.map((r) => h * Dq + r), ...Array.from({ length: Dr }, (_, r) => h * Dq + D + r)]).flat();
    const Qs = new Float64Array(H * Dqs * C);
    rows.forEach((src, i) => Qs.set(Q.subarray(src * C, (src + 1) * C), i * C));
    Q = Qs;
    if (qb) qb = Float64Array.from(rows, (src) => qb![src]!);
  }
  if (opts.qRank === null) {
    put('q_proj.weight', [H * Dqs, C], Q);
    if (qb) put('q_proj.bias', [H * Dqs], qb);
  } else {
    if (qb) throw new OptionError('qRank', undefined, "a low-rank query cannot carry the teacher's q bias; convert without {qRank}");
    const Rq = Math.min(opts.qRank, H * Dqs, C);
    const { u, s, vt, k } = linalg.svd(Q, H * Dqs, C);
    const qa = new Float64Array(Rq * C);
    for (let r = 0; r < Rq; r++) for (let c = 0; c < C; c++) qa[r * C + c] = s[r]! * vt[r * C + c]!;
    const qbW = new Float64Array(H * Dqs * Rq);
    for (let i = 0; i < H * Dqs; i++) for (let r = 0; r < Rq; r++) qbW[i * Rq + r] = u[i * k + r]!;
    let tr = 0;
    for (const e of secondMomentDiag(calibrated(teacher), st, qa, null, Rq)) tr += e;
    put('q_a_proj.weight', [Rq, C], qa);
    put('q_a_layernorm.weight', [Rq], new Float64Array(Rq).fill(Math.sqrt(tr / Rq) || 1));
    put('q_b_proj.weight', [H * Dqs, Rq], qbW);
  }

  const invFreq = cfg.ropeInvFreq;
  const attn: MlaAttention = {
    kind: 'mla', kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: D,
    qRank: opts.qRank === null ? null : Math.min(opts.qRank, H * Dqs, C),
    latentNorm: opts.latentNorm, bias: hasBias,
    ropeInvFreq: comps.map((c) => invFreq[c.pair]!),
  };
  return { attn, tensors, energyKept: energyKept(fact.spectrum, R), spectrum: Array.from(fact.spectrum) };
}

/**
 * In the no-rope query rows (D per head), replace each pair's dropped rotation by its mean under the teacher's
 * attention distances: q·R(−ωΔ)·k ≈ q·E[R(−ωΔ)]·k = (Mᵀq)·k with M = [[c, s], [−s, c]], c = E cos ωΔ, s = E sin ωΔ.
 * High frequencies average out (c, s → 0), low ones stay (c → 1). Exact parts of the key are unaffected: where the
 * rope key carries every component, the no-rope keys are zero.
 */
function applyMeanRotation(
  Q: Float64Array, qb: Float64Array | null, st: LayerStats, invFreq: number[], pairing: RopePairing, H: number, D: number, Dq: number, C: number,
): void {
  if (!st.relDist || !st.maxDist) throw new Error('mean-rotation needs calibration attention distances');
  const n = st.maxDist;
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < D / 2; j++) {
      let c = 0;
      let s = 0;
      for (let d = 0; d < n; d++) {
        const w = st.relDist[h * n + d]!;
        c += w * Math.cos(invFreq[j]! * d);
        s += w * Math.sin(invFreq[j]! * d);
      }
      const [ra, rb] = pairRows(pairing, D, j);
      const ia = (h * Dq + ra) * C;
      const ib = (h * Dq + rb) * C;
      for (let k = 0; k < C; k++) {
        const a = Q[ia + k]!;
        const b = Q[ib + k]!;
        Q[ia + k] = c * a - s * b;
        Q[ib + k] = s * a + c * b;
      }
      if (qb) {
        const a = qb[h * Dq + ra]!;
        const b = qb[h * Dq + rb]!;
        qb[h * Dq + ra] = c * a - s * b;
        qb[h * Dq + rb] = s * a + c * b;
      }
    }
  }
}

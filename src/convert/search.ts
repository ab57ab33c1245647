// Budgeted plan search (`mla convert --search`) and automatic hybrids (`--keep-layers auto:K`): choose, by measured
// KL to the teacher on calibration data, what the fixed rules (a uniform rank, half the head dim for rope, one no-rope
// init) choose blindly. At a fixed KV budget (values cached per token, all layers):
//   1. rope/latent split: every even rope dim d_r whose uniform rank r = budget/layer − d_r stays ≥ 1 (a grid of at
//      most 8 values), × the no-rope inits (mean-rotation, identity); each candidate is converted whole and scored;
//   2. per-layer ranks (native format only): at the best split, each layer converted alone at r − Δ, r, r + Δ (the other
//      layers stay teacher) gives its KL cost curve; rank moves by Δ from the layers that lose least to those that gain
//      most while the gain exceeds the loss (CARE's per-layer rank schedule, measured instead of read off a spectrum);
//      the moved plan is scored whole and kept only if it beats the uniform one;
//   3. the rope pairs and calibration statistics are computed once and shared by every candidate.
// KL is measured on the teacher's own samples drawn at another seed than the statistics' (held out from them).
// A target with fixed shapes (vLLM, SGLang, llama.cpp CUDA) leaves only the no-rope init to choose; a target with one
// kv_lora_rank (GGUF, transformers) skips step 2.
// Auto hybrid: the K layers whose conversion alone costs the most KL are kept as original attention (Zebra-Llama's
// idea); the ratio plan then gives the converted layers what the kept ones leave of the budget.
// Legend: L layers, D head dim, Dr rope dims, r kv rank, V vocabulary, T tokens per sequence.

import { noGrad } from '../autograd/var.js';
import type { Tensor } from '../tensor/tensor.js';
import { forward } from '../model/forward.js';
import { Model } from '../model/model.js';
import { kvValuesPerToken, type GqaAttention } from '../model/config.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError } from '../errors.js';
import { tidy } from '../tensor/storage.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { calibrationSequences, collectStats, type LayerStats } from './calibrate.js';
import { checkFoldOptions, convert, targetOptions, NOPE_INITS, type ConvertGiven, type ConvertOptions, type NopeInit } from './convert.js';
import { TARGET_RULES } from './targets.js';
import { autoFolds } from './freqfold.js';
import { assertFiniteRows, assertFiniteValue } from '../model/finite.js';

export interface SearchOptions {
  /** Sequences the KL is measured on (the teacher's samples at seed + 1, calib.length tokens each). */
  samples: number;
}

export const SEARCH_DEFAULTS: SearchOptions = { samples: 8 };

/** `--freqfold auto`: each fold tried (TransMLA's ladder) with the calibration KL of its full-rank conversion. */
export interface FreqfoldChoice {
  freqfold: number;
  tried: { freqfold: number; kl: number }[];
}

export interface SearchCandidate {
  ropeDim: number;
  nopeInit: NopeInit;
  /** Kv rank per layer (null: kept as original attention). */
  ranks: (number | null)[];
  /** Mean per-token KL(teacher ‖ student) on the search samples (nats). */
  kl: number;
  compression: number;
}

export interface SearchResult {
  /** The options of the chosen plan (a 'ranks' or 'rank' plan with its rope dim and no-rope init). */
  options: ConvertOptions;
  chosen: SearchCandidate;
  /** The plan the options would give without a search (the uniform rank at the default or given rope dim). */
  uniform: SearchCandidate;
  tried: SearchCandidate[];
}

/** Scores students against the teacher on fixed sequences: mean per-token KL(teacher ‖ student), by the backend's
 *  klDiv op (as `mla compare` measures it). The teacher's logits are computed once and kept. A non-finite logit or
 *  KL stops the search (NonFiniteError naming the candidate): a NaN would otherwise lose every comparison silently
 *  and an ∞ would be ranked. */
export class KlMeter {
  private readonly teacher: Tensor[];

  constructor(
    readonly model: Model,
    readonly seqs: number[][],
  ) {
    this.teacher = noGrad(() => seqs.map((s) => tidy(() => {
      const t = logits(model, s);
      assertFiniteRows('search', 'logits from the teacher', t.data, s.length, model.config.vocabSize);
      return t;
    })));
  }

  /** @param candidate names the candidate in an error ("d_r 4, r_kv 12, identity"). */
  kl(student: Model, candidate = 'a candidate'): number {
    let sum = 0;
    let n = 0;
    const context = `search: ${candidate}`;
    noGrad(() => this.seqs.forEach((s, i) => tidy(() => {
      const sl = logits(student, s);
      assertFiniteRows(context, 'logits from the student', sl.data, s.length, student.config.vocabSize);
      const kd = student.be.run('klDiv', [sl, this.teacher[i]!], { temperature: 1 })[0];
      assertFiniteRows(context, 'KL to the teacher', kd.data.subarray(0, s.length), s.length, 1);
      for (let r = 0; r < s.length; r++) sum += kd.data[r]!;
      n += s.length;
    })));
    const kl = sum / n;
    assertFiniteValue(context, 'the mean KL to the teacher', kl, `over ${n} tokens`);
    return kl;
  }
}

/** (T, V) logits of the model for one sequence. */
function logits(model: Model, seq: number[]): Tensor {
  return forward(model, Int32Array.from(seq), 1, seq.length).value;
}

/** What every candidate shares: the statistics, the KL meter and the teacher's per-layer cache sizes. */
interface SearchContext {
  model: Model;
  tokenizer: Tokenizer | null;
  meter: KlMeter;
  stats: LayerStats[];
  /** Values per token the budget allows (all layers); null: the options have no budget (a per-layer plan). */
  budget: number | null;
}

/** Refuse options without a KV budget for the search and auto:K (before any model is loaded). */
export function requireBudget(opts: ConvertOptions): void {
  if (opts.plan.kind !== 'ratio' && opts.plan.kind !== 'rank') throw noBudget();
}

function noBudget(): OptionError {
  return new OptionError('search', undefined, 'needs a KV budget: give {plan.ratio} or {plan.rank}, not a per-layer plan');
}

/** Calibration statistics and the KL meter, prepared once for every candidate of a search and an auto hybrid. */
export class PlanSearch {
  private readonly ctx: SearchContext;

  /** @param opts the conversion options (a ratio or rank plan: the KV budget plan() and autoKeep() need; any plan
   *  for freqfold()); calibration uses opts.calib. */
  constructor(
    model: Model, tokenizer: Tokenizer | null, opts: ConvertOptions, search: SearchOptions = SEARCH_DEFAULTS, calibProgress: ProgressSink = silentProgress,
  ) {
    if (!Number.isInteger(search.samples) || search.samples < 1) throw new OptionError('searchSamples', search.samples, 'expected a positive integer');
    const cfg = model.config;
    const teacher = cfg.layers.reduce((s, a) => s + kvValuesPerToken(a), 0);
    const D = (cfg.layers[0] as GqaAttention).headDim;
    const budget = opts.plan.kind === 'ratio' ? teacher / opts.plan.ratio : opts.plan.kind === 'rank' ? cfg.numLayers * (opts.plan.rank + (opts.ropeDim ?? D / 2)) : null;
    // Statistics for every candidate (the mean-rotation ones need them even when the given options do not).
    // The KL sequences are held out from the statistics': the teacher's samples at another seed, or the calibration
    // text's windows after the statistics' ones.
    let statSeqs: number[][];
    let klSeqs: number[][];
    if (opts.calib.file) {
      const all = calibrationSequences(model, tokenizer, { ...opts.calib, samples: opts.calib.samples + search.samples }, calibProgress);
      if (all.length <= opts.calib.samples) {
        throw new OptionError('calib.file', opts.calib.file, `has ${all.length} windows of ${opts.calib.length} tokens; the search needs ${search.samples} more after the {calib.samples} ${opts.calib.samples} for statistics (lower {calib.samples} or give more text)`);
      }
      statSeqs = all.slice(0, opts.calib.samples);
      klSeqs = all.slice(opts.calib.samples);
    } else {
      statSeqs = calibrationSequences(model, tokenizer, opts.calib, calibProgress);
      klSeqs = calibrationSequences(model, tokenizer, { ...opts.calib, samples: search.samples, seed: opts.calib.seed + 1 }, calibProgress);
    }
    const stats = collectStats(model, statSeqs, calibProgress);
    calibProgress.end();
    this.ctx = { model, tokenizer, meter: new KlMeter(model, klSeqs), stats, budget };
  }

  /** The calibration statistics (pass them to convert as given.stats). */
  get stats(): LayerStats[] {
    return this.ctx.stats;
  }

  /** Conversions scored by plan() for these options (for a progress total). */
  planScores(opts: ConvertOptions): number {
    const rules = opts.target ? TARGET_RULES[opts.target] : null;
    if (rules?.shapes) return NOPE_INITS.length;
    const dims = this.ropeDims(opts);
    const D = (this.ctx.model.config.layers[0] as GqaAttention).headDim;
    // The uniform plan is scored first and not again among the splits.
    const again = dims.includes(opts.ropeDim ?? D / 2) ? 1 : 0;
    const perLayer = rules?.uniformRank ? 0 : 3 * (this.ctx.model.config.numLayers - opts.keepLayers.length) + 2;
    return 1 + dims.length * NOPE_INITS.length - again + perLayer;
  }

  private ropeDims(opts: ConvertOptions): number[] {
    const D = (this.ctx.model.config.layers[0] as GqaAttention).headDim;
    const step = Math.max(2, 2 * Math.round(D / 16));
    return Array.from({ length: Math.floor(D / step) }, (_, i) => (i + 1) * step).filter((Dr) => uniformRank(this.ctx, Dr, opts.keepLayers) >= 1);
  }

  /**
   * The plan with the lowest calibration KL at the options' KV budget (see the file comment), and the uniform plan's
   * KL for comparison. Progress ticks once per scored conversion (planScores of them).
   */
  plan(opts0: ConvertOptions, progress: ProgressSink = silentProgress): SearchResult {
    const ctx = this.ctx;
    const cfg = ctx.model.config;
    const { opts } = targetOptions(cfg, opts0);
    if ((opts.freqfold ?? 1) !== 1) {
      throw new OptionError('freqfold', opts.freqfold, 'not with {search}: each rope dim it tries would need its own folds; search with {freqfold} 1');
    }
    const rules = opts.target ? TARGET_RULES[opts.target] : null;
    const D = (cfg.layers[0] as GqaAttention).headDim;
    const keep = opts.keepLayers;
    const tried: SearchCandidate[] = [];
    const scored = (o: ConvertOptions, given: ConvertGiven = {}): SearchCandidate => {
      const s = score(ctx, o, given);
      const c = { ropeDim: o.ropeDim ?? D / 2, nopeInit: o.nopeInit, ranks: s.ranks, kl: s.kl, compression: s.compression };
      tried.push(c);
      progress.tick(1);
      return c;
    };
    const withShape = (Dr: number, nopeInit: NopeInit): ConvertOptions =>
      rules?.shapes ? { ...opts, nopeInit } : { ...opts, ropeDim: Dr, nopeInit, plan: { kind: 'rank', rank: uniformRank(ctx, Dr, keep) } };

    const defaultDr = opts.ropeDim ?? D / 2;
    const uniformOpts = withShape(defaultDr, opts.nopeInit);
    const uniform = scored(uniformOpts);
    let best = { cand: uniform, opts: uniformOpts };
    // 1. The split and the no-rope init.
    for (const Dr of rules?.shapes ? [defaultDr] : this.ropeDims(opts)) {
      for (const nopeInit of NOPE_INITS) {
        if (Dr === defaultDr && nopeInit === opts.nopeInit) continue;
        const o = withShape(Dr, nopeInit);
        const c = scored(o);
        if (c.kl < best.cand.kl) best = { cand: c, opts: o };
      }
    }
    // 2. Per-layer ranks around the best uniform split.
    if (!rules?.uniformRank && !rules?.shapes && best.opts.plan.kind === 'rank') {
      const moved = moveRanks(ctx, best.opts, best.opts.plan.rank, () => progress.tick(1));
      if (moved) {
        const c = scored(moved);
        if (c.kl < best.cand.kl) best = { cand: c, opts: moved };
      }
    }
    progress.end();
    return { options: best.opts, chosen: best.cand, uniform, tried };
  }

  /**
   * TransMLA's `--freqfold auto` with our calibration KL in place of its WikiText-2 perplexity: the folds c, 2c, 4c, …
   * (c = head_dim / rope_dim; freqfold.ts autoFolds) in turn, each scored by its RoRoPE-only conversion (every layer
   * at full kv rank, so only the rope choice costs), doubling while the KL improves; the last improving fold wins.
   */
  freqfold(opts0: ConvertOptions, progress: ProgressSink = silentProgress): FreqfoldChoice {
    const ctx = this.ctx;
    const cfg = ctx.model.config;
    const { opts } = targetOptions(cfg, opts0);
    checkFoldOptions(cfg, { ...opts, freqfold: 'auto' });
    const layers = cfg.layers as GqaAttention[];
    const D = layers[0]!.headDim;
    const Dr = opts.ropeDim ?? D / 2;
    const folds = autoFolds(D, Dr);
    const full = layers.map((a) => (opts.basis === 'weight' ? Math.min(2 * a.numKvHeads * a.headDim, cfg.hiddenSize) : 2 * a.numKvHeads * a.headDim));
    const tried: { freqfold: number; kl: number }[] = [];
    let best: { freqfold: number; kl: number } | null = null;
    for (const F of folds) {
      const kl = score(ctx, { ...opts, target: undefined, ropeDim: Dr, freqfold: F, plan: { kind: 'ranks', ranks: full } }).kl;
      progress.tick(1);
      tried.push({ freqfold: F, kl });
      if (best && kl >= best.kl) break;
      best = { freqfold: F, kl };
    }
    progress.end();
    return { freqfold: best!.freqfold, tried };
  }

  /**
   * The K layers whose conversion costs most: each converted alone with the options (the others kept) and scored by
   * calibration KL. Returns the layers to keep (ascending) and every layer's cost. L + 1 scored conversions.
   */
  autoKeep(opts: ConvertOptions, K: number, progress: ProgressSink = silentProgress): { keep: number[]; cost: number[] } {
    const ctx = this.ctx;
    const L = ctx.model.config.numLayers;
    if (!Number.isInteger(K) || K < 1 || K >= L) throw new OptionError('keepLayers', `auto:${K}`, `expected auto:K with 1 ≤ K ≤ ${L - 1} (the model has ${L} layers)`);
    const Dr = opts.ropeDim ?? (ctx.model.config.layers[0] as GqaAttention).headDim / 2;
    const full: ConvertOptions = { ...opts, keepLayers: [], ropeDim: Dr, plan: { kind: 'rank', rank: uniformRank(ctx, Dr, []) } };
    const pairs = score(ctx, full).ropePairs ?? undefined;
    progress.tick(1);
    const cost = Array.from({ length: L }, (_, l) => {
      const others = Array.from({ length: L }, (_, i) => i).filter((i) => i !== l);
      const kl = score(ctx, { ...full, keepLayers: others }, { ropePairs: pairs }).kl;
      progress.tick(1);
      return kl;
    });
    progress.end();
    const keep = cost.map((c, l) => ({ c, l })).sort((a, b) => b.c - a.c || a.l - b.l).slice(0, K).map((x) => x.l).sort((a, b) => a - b);
    return { keep, cost };
  }
}

function score(ctx: SearchContext, opts: ConvertOptions, given: ConvertGiven = {}): { kl: number; compression: number; ranks: (number | null)[]; ropePairs: number[] | null } {
  const r = convert(ctx.model, ctx.tokenizer, opts, undefined, { stats: ctx.stats, ...given });
  const ranks = r.layers.map((l) => l.kvRank ?? 'kept').join(',');
  const Dr = r.layers.find((l) => l.ropeDim !== null)?.ropeDim ?? '-';
  const fold = (opts.freqfold ?? 1) === 1 ? '' : `, freqfold ${String(opts.freqfold)}`;
  const kl = ctx.meter.kl(Model.fromWeights(r.config, r.weights, ctx.model.be), `the candidate d_r ${Dr}, r_kv ${ranks}, ${opts.nopeInit}${fold}`);
  return { kl, compression: r.compression, ranks: r.layers.map((l) => l.kvRank), ropePairs: r.ropePairs };
}

/** Uniform rank for rope dim Dr at the context's budget, with `kept` layers left as they are. */
function uniformRank(ctx: SearchContext, Dr: number, kept: number[]): number {
  const cfg = ctx.model.config;
  if (ctx.budget === null) throw noBudget();
  const keptValues = kept.reduce((s, l) => s + kvValuesPerToken(cfg.layers[l]!), 0);
  return Math.round((ctx.budget - keptValues) / (cfg.numLayers - kept.length) - Dr);
}

/** Step 2: a per-layer plan from each layer's KL at r − Δ, r, r + Δ alone, or null when no move pays. */
function moveRanks(ctx: SearchContext, opts: ConvertOptions, r: number, tick: () => void): ConvertOptions | null {
  const L = ctx.model.config.numLayers;
  const delta = Math.max(1, Math.round(r / 4));
  if (r - delta < 1) return null;
  const converted = Array.from({ length: L }, (_, l) => l).filter((l) => !opts.keepLayers.includes(l));
  const pairs = score(ctx, opts).ropePairs ?? undefined;
  tick();
  // cost[l][k]: KL with only layer l converted, at rank r + (k − 1)·Δ.
  const cost = new Map<number, number[]>();
  for (const l of converted) {
    const others = Array.from({ length: L }, (_, i) => i).filter((i) => i !== l);
    cost.set(l, [r - delta, r, r + delta].map((rank) => {
      tick();
      return score(ctx, { ...opts, keepLayers: others, plan: { kind: 'rank', rank } }, { ropePairs: pairs }).kl;
    }));
  }
  const ranks = Array.from({ length: L }, () => r);
  const gain = converted.map((l) => ({ l, v: cost.get(l)![1]! - cost.get(l)![2]! })).sort((a, b) => b.v - a.v);
  const loss = converted.map((l) => ({ l, v: cost.get(l)![0]! - cost.get(l)![1]! })).sort((a, b) => a.v - b.v);
  const moved = new Set<number>();
  let any = false;
  for (let i = 0; i < Math.min(gain.length, loss.length); i++) {
    const g = gain.find((x) => !moved.has(x.l));
    const s = loss.find((x) => !moved.has(x.l) && x.l !== g?.l);
    if (!g || !s || g.v <= s.v) break;
    ranks[g.l]! += delta;
    ranks[s.l]! -= delta;
    moved.add(g.l).add(s.l);
    any = true;
  }
  return any ? { ...opts, plan: { kind: 'ranks', ranks } } : null;
}

// Shapes that serve: for a teacher (GQA/MHA config) and a target engine, the (kv rank, rope dims) its fast kernels
// accept, what each gives in compression for this model, whether the rope frequencies can be kept exactly (a
// shared run of teacher pairs the engine can express, rope-select.ts sharedPairs), and what the engine refuses
// (biases, per-layer ranks). `mla plan` prints it per target; `mla convert --target` converts within it.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, L layers, R kv rank, Dr rope dims, KV = 2·Hkv·D values
// cached per token and layer by the teacher.

import type { GqaAttention, ModelConfig } from '../model/config.js';
import { UserError } from '../errors.js';
import { teacherAttention } from './kinds.js';
import { geometricDeviation, sharedPairs } from './rope-select.js';
import { ropeAccepts, TARGET_RULES, type RopeRule, type Target, type TargetRules } from './targets.js';

export interface ShapeOption {
  kvRank: number;
  ropeDim: number;
  /** Teacher KV values per layer / (R + Dr). */
  compression: number;
  /** Why this shape cannot be used for this model (empty: usable). */
  problems: string[];
  /** The rope pairs every layer would keep for an exact export, or null when no run is exact for this target. */
  exactPairs: number[] | null;
}

export interface TargetPlan {
  target: Target;
  rules: TargetRules;
  options: ShapeOption[];
  /** The usable option with the highest compression (null: none). */
  chosen: ShapeOption | null;
  /** Rope dims (even, ≤ D) with an exact shared run for this target. */
  exactRopeDims: number[];
  notes: string[];
}

export interface ShapeRequest {
  kvRank?: number;
  ratio?: number;
  ropeDim?: number;
  /** Per-layer ranks (--energy) asked for. */
  perLayerRanks?: boolean;
}

/** The one GQA geometry of a teacher (planning needs every layer alike). */
export function teacherGeometry(cfg: ModelConfig): GqaAttention {
  const ts = cfg.layers.map(teacherAttention);
  const a = ts[0];
  if (!a || ts.some((l) => !l || l.numKvHeads !== a.numKvHeads || l.headDim !== a.headDim)) {
    throw new UserError('plan: expected a GQA/MHA model with one attention geometry in every layer (plan the teacher, not a converted model)');
  }
  return a;
}

/** Whether Dr/2 teacher pairs can be kept in every layer with frequencies the target's rope rule accepts. */
function exactRun(cfg: ModelConfig, rules: TargetRules, Dr: number): number[] | null {
  const n = cfg.ropeInvFreq.length;
  if (Dr / 2 > n || Dr < 2) return null;
  if (rules.rope === 'free') return Array.from({ length: Dr / 2 }, (_, i) => n - Dr / 2 + i);
  const c = sharedPairs([cfg.ropeInvFreq.map((_, j) => j)], Dr / 2, cfg.ropeInvFreq, (f) => ropeAccepts(rules.rope, f, cfg));
  return c.exact ? c.pairs : null;
}

/** The plan for one target. With no shape rule, the requested (or default: 4×, D/2 rope dims) shape is the option. */
export function planTarget(cfg: ModelConfig, target: Target, req: ShapeRequest = {}): TargetPlan {
  const rules = TARGET_RULES[target];
  const a = teacherGeometry(cfg);
  const D = a.headDim;
  const KV = 2 * a.numKvHeads * D;
  const H = cfg.numHeads;
  const defaultDr = req.ropeDim ?? D / 2;
  const shapes = rules.shapes ?? [{ kvRank: req.kvRank ?? Math.max(1, Math.round(KV / (req.ratio ?? 4) - defaultDr)), ropeDim: defaultDr }];
  const options = shapes.map((s): ShapeOption => {
    const problems: string[] = [];
    const m = 'minHeadsMultiple' in s ? s.minHeadsMultiple : undefined;
    if (m && H % m !== 0) problems.push(`needs heads % ${m} == 0 (the model has ${H})`);
    if (s.ropeDim > D) problems.push(`rope dims ${s.ropeDim} exceed the head dim ${D} (every layer keeps one component per teacher pair)`);
    if (s.kvRank > Math.min(KV, cfg.hiddenSize)) problems.push(`kv rank ${s.kvRank} exceeds min(2·Hkv·D, C) = ${Math.min(KV, cfg.hiddenSize)}: the latent would be larger than what it compresses`);
    if (s.kvRank + s.ropeDim >= KV) problems.push(`${s.kvRank}+${s.ropeDim} values per token ≥ the teacher's ${KV}: no compression`);
    if (rules.shapes && req.kvRank !== undefined && req.kvRank !== s.kvRank) problems.push(`--kv-rank ${req.kvRank} requested`);
    if (rules.shapes && req.ropeDim !== undefined && req.ropeDim !== s.ropeDim) problems.push(`--rope-dim ${req.ropeDim} requested`);
    return { kvRank: s.kvRank, ropeDim: s.ropeDim, compression: KV / (s.kvRank + s.ropeDim), problems, exactPairs: exactRun(cfg, rules, s.ropeDim) };
  });
  const usable = options.filter((o) => o.problems.length === 0);
  const chosen = usable.reduce<ShapeOption | null>((b, o) => (!b || o.compression > b.compression ? o : b), null);
  const exactRopeDims: number[] = [];
  for (let Dr = 2; Dr <= D; Dr += 2) if (exactRun(cfg, rules, Dr)) exactRopeDims.push(Dr);
  const notes: string[] = [];
  if (chosen && !chosen.exactPairs && rules.rope !== 'free') {
    const near = sharedPairs([cfg.ropeInvFreq.map(() => 1)], chosen.ropeDim / 2, cfg.ropeInvFreq, () => false);
    const dev = Math.expm1(geometricDeviation(near.pairs.map((j) => cfg.ropeInvFreq[j]!)));
    notes.push(
      `rope dims ${chosen.ropeDim}: no run of ${chosen.ropeDim / 2} teacher pairs has frequencies ${rules.engine} can express ` +
        `(${ROPE_FORMS[rules.rope]}); the export fits the nearest run (pairs ` +
        `${near.pairs[0]}…${near.pairs.at(-1)}: frequencies moved by up to ${(100 * dev).toFixed(1)}%) and reports its logit error${exactRopeDims.length ? ` (exact rope dims: ${compactList(exactRopeDims)})` : ''}`,
    );
  }
  if (a.qkvBias && !rules.biases) {
    notes.push(
      `q/k/v biases: ${rules.engine} has none. Exact folds are partial (a key bias is a per-query constant under softmax only outside ` +
        'the rope part and the latent norm; a value bias becomes a constant output o_proj·b_v, but stock o_proj has no bias): the export refuses',
    );
  }
  if (req.perLayerRanks && rules.uniformRank) notes.push(`per-layer ranks (--energy): ${rules.engine} has one kv_lora_rank; pad at export (--pad-ranks) or use --kv-rank`);
  if (!chosen) notes.push('no shape this engine accepts fits this model (see above)');
  return { target, rules, options, chosen, exactRopeDims, notes };
}

/** What each rope rule can write, in words. */
export const ROPE_FORMS: Record<RopeRule, string> = {
  free: 'any frequencies per layer',
  geometric: 'rope_theta + a linear factor',
  unscaled: 'rope_theta alone, no rope_scaling',
  hf: 'rope_theta + linear or llama3 rope_scaling',
};

/** "2–14, 18" style list of even numbers. */
function compactList(xs: number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < xs.length) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 2) j++;
    out.push(j > i ? `${xs[i]}–${xs[j]}` : `${xs[i]}`);
    i = j + 1;
  }
  return out.join(', ');
}

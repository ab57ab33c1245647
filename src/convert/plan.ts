// Shapes that serve: for a teacher (GQA/MHA config) and a target engine, the (kv rank, rope dims) its fast kernels
// accept, what each gives in compression for this model, whether the rope frequencies can be kept exactly (a
// shared run of teacher pairs the engine can express, rope-select.ts sharedPairs), and what the engine refuses
// (biases, per-layer ranks). `mla plan` prints it per target; `mla convert --target` converts within it.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, L layers, R kv rank, Dr rope dims, KV = 2·Hkv·D values
// cached per token and layer by the teacher.

import type { GqaAttention, MlaAttention, ModelConfig } from '../model/config.js';
import { stockRopeParams } from '../io/deepseek.js';
import { UserError } from '../errors.js';
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
  const a = cfg.layers[0];
  if (!a || cfg.layers.some((l) => l.kind !== 'gqa' || l.numKvHeads !== (a as GqaAttention).numKvHeads || l.headDim !== (a as GqaAttention).headDim)) {
    throw new UserError('plan: expected a GQA/MHA model with one attention geometry in every layer (plan the teacher, not a converted model)');
  }
  return a as GqaAttention;
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

/**
 * What each engine does with an exported all-MLA model of this shape (the export prints these): the shape gates
 * of vLLM/SGLang and llama.cpp's CUDA flash attention, FlashMLA's 512+64, the rope_scaling rewrite of vLLM/SGLang.
 * Only the engines that read `format` are listed.
 */
export function servingVerdicts(cfg: ModelConfig, format: 'gguf' | 'hf'): string[] {
  const mla = cfg.layers.filter((a): a is MlaAttention => a.kind === 'mla');
  const a = mla[0];
  if (!a) return [];
  const R = Math.max(...mla.map((l) => l.kvRank));
  const Dr = a.ropeDim;
  const H = cfg.numHeads;
  const shape = `${R}+${Dr}`;
  const out: string[] = [];
  const fits = (t: Target): boolean => (TARGET_RULES[t].shapes ?? []).some((s) => s.kvRank === R && s.ropeDim === Dr && (!('minHeadsMultiple' in s) || H % s.minHeadsMultiple! === 0));
  if (format === 'gguf') {
    out.push(
      fits('llamacpp-cuda')
        ? `llama.cpp CUDA: ${shape} has a flash-attention MLA kernel`
        : `llama.cpp CUDA: no flash-attention MLA kernel for K/V ${R + Dr}/${R}${R === 256 && Dr === 64 ? ` (needs heads % 32 == 0, the model has ${H})` : ''}: runs on the slower non-FA path (CPU is unaffected)`,
    );
    return out;
  }
  out.push(
    fits('vllm')
      ? `vLLM/SGLang: head size ${R + Dr} accepted${R === 512 ? ' (FlashMLA / FA3-MLA on Hopper)' : ' (not FlashMLA, which needs 512+64)'}`
      : `vLLM/SGLang: refuse head size kv_lora_rank + qk_rope_head_dim = ${R + Dr} (their MLA backends accept 576 or 320): convert with --target vllm`,
  );
  const rope = stockRopeParams(cfg, a.ropeInvFreq);
  if (rope?.scaling) out.push(`vLLM/SGLang: rope_scaling ${String(rope.scaling.rope_type)} becomes deepseek_yarn there, which does not reproduce it`);
  return out;
}

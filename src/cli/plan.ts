// mla plan MODEL [--target T] [--kv-rank R | --kv-ratio X] [--rope-dim D] [--json]: for each engine (or one), the
// (kv rank, rope dims) shapes its fast MLA kernels accept, the compression each gives for this model, whether the
// rope frequencies export exactly, and what the engine refuses. Reads only config.json (or a llama2.c header).

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { commonFlags, num, onePositional, parse, positiveInt, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { UserError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { parseHfConfig } from '../io/hfconfig.js';
import { readJsonFile } from '../io/json.js';
import { loadLlama2c } from '../io/llama2c.js';
import { planTarget, teacherGeometry, type TargetPlan } from '../convert/plan.js';
import { TARGETS, type Target } from '../convert/targets.js';

export const planSpec = {
  name: 'plan',
  args: 'MODEL',
  flags: {
    target: { type: 'string', value: TARGETS.join('|'), defaultText: 'every target', doc: 'the engine to plan for' },
    'kv-rank': { type: 'string', value: 'R', doc: 'kv rank asked for (targets without a shape rule; checked against the others)' },
    'kv-ratio': { type: 'string', value: 'X', defaultText: '4', doc: 'KV compression asked for (targets without a shape rule)' },
    'rope-dim': { type: 'string', value: 'D', defaultText: 'half the head dim', doc: 'rope dims asked for' },
    ...commonFlags,
  },
} as const satisfies CommandSpec;

/** A teacher's config without its weights: an HF directory's config.json, or a llama2.c checkpoint's header. */
export function readTeacherConfig(path: string): ModelConfig {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(`${path}: not found`);
  }
  if (st.isDirectory()) {
    const file = join(path, 'config.json');
    const raw = readJsonFile(file);
    if ((raw as { model_type?: unknown }).model_type === 'deepseek_v3') {
      throw new UserError(`${file}: already MLA (deepseek_v3): plan the teacher; mla export checks a converted model against each engine`);
    }
    return parseHfConfig(raw, file);
  }
  return loadLlama2c(path).config;
}

const shapeText = (p: TargetPlan): string => (p.rules.shapes ? p.rules.shapes.map((s) => `${s.kvRank}+${s.ropeDim}${'minHeadsMultiple' in s ? ` (heads%${s.minHeadsMultiple})` : ''}`).join(', ') : 'any');

export async function planCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, planSpec);
  const path = onePositional(positionals, 'MODEL', 'plan');
  const target = values.target as Target | undefined;
  if (target !== undefined && !TARGETS.includes(target)) throw new UserError(`--target: expected ${TARGETS.join(', ')}, got '${target}'`);
  const cfg = readTeacherConfig(path);
  const a = teacherGeometry(cfg);
  const req = {
    kvRank: values['kv-rank'] === undefined ? undefined : num(values['kv-rank'], 'kv-rank', 0, positiveInt, 'a positive integer'),
    ratio: values['kv-ratio'] === undefined ? undefined : num(values['kv-ratio'], 'kv-ratio', 0, (n) => n >= 1, 'a compression ≥ 1'),
    ropeDim: values['rope-dim'] === undefined ? undefined : num(values['rope-dim'], 'rope-dim', 0, (n) => positiveInt(n) && n % 2 === 0, 'an even positive integer'),
  };
  const plans = (target ? [target] : TARGETS).map((t) => planTarget(cfg, t, req));
  const KV = 2 * a.numKvHeads * a.headDim;
  if (values.json) {
    const out = plans.map((p) => ({
      target: p.target, engine: p.rules.engine, accepted_shapes: p.rules.shapes, uniform_rank: p.rules.uniformRank, rope_rule: p.rules.rope,
      options: p.options.map((o) => ({ kv_rank: o.kvRank, rope_dim: o.ropeDim, compression: o.compression, problems: o.problems, exact_rope_pairs: o.exactPairs })),
      chosen: p.chosen && { kv_rank: p.chosen.kvRank, rope_dim: p.chosen.ropeDim, compression: p.chosen.compression }, exact_rope_dims: p.exactRopeDims, notes: p.notes,
    }));
    process.stdout.write(JSON.stringify({ source: path, teacher_kv_values_per_layer: KV, plans: out }, null, 2) + '\n');
    return;
  }
  const rows = plans.map((p) => [
    p.target,
    p.rules.engine,
    shapeText(p),
    p.chosen ? `${p.chosen.kvRank}+${p.chosen.ropeDim}` : 'none fits',
    p.chosen ? `${p.chosen.compression.toFixed(2)}×` : '-',
    p.chosen ? (p.rules.rope === 'free' ? 'per layer' : p.chosen.exactPairs ? `exact (pairs ${p.chosen.exactPairs[0]}…${p.chosen.exactPairs.at(-1)})` : 'nearest fit') : '-',
    p.rules.uniformRank ? 'one rank' : 'per layer',
  ]);
  const lines = [
    `model   ${path}: ${cfg.numLayers} layers, ${cfg.numHeads} heads, ${a.numKvHeads} kv heads × ${a.headDim}; teacher KV ${KV} values per token per layer` +
      `${cfg.ropeScaling ? `; rope scaling ${String(cfg.ropeScaling.rope_type ?? cfg.ropeScaling.type)}` : ''}`,
    '',
    table(['target', 'engine', 'accepted (r_kv+d_r)', 'plan', 'compression', 'rope', 'ranks'], rows),
    '',
  ];
  for (const p of plans) {
    for (const o of p.options.filter((x) => x.problems.length > 0)) lines.push(`${p.target}: ${o.kvRank}+${o.ropeDim} not usable: ${o.problems.join('; ')}`);
    for (const n of p.notes) lines.push(`${p.target}: ${n}`);
  }
  if (plans.some((p) => p.rules.latentNorm)) lines.push('stock engines apply kv_a_layernorm: mla convert --target adds --latent-norm (distil with it in place)');
  process.stdout.write(lines.join('\n') + '\n');
}

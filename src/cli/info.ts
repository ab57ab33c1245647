// mla info MODEL [--json]: architecture, parameters, per-layer attention, KV cache bytes per token. Reads headers only
// (io/load.ts inspectModel): no weight is read, so it is instant and small at any model size.

import { commonFlags, onePositional, parse, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { resolveBackend } from '../infer/open.js';
import { inspectModel, loadTokenizerPath, type WeightSummary } from '../io/load.js';
import { kvBytesPerToken, kvValuesPerToken, type ModelConfig } from '../model/config.js';
import { parameterCount } from '../model/weights.js';
import { kvBytesPerTokenFor } from '../model/cache.js';
import { CACHE_DTYPES } from '../model/cache-dtype.js';
import { attentionKind } from '../model/attention/index.js';

export interface InfoResult {
  source: string;
  architecture: string;
  parameters: number;
  /** Bytes of the weights in their stored dtypes, and parameters per dtype (null when described from a config). */
  weight_bytes: number | null;
  weight_dtypes: Record<string, number> | null;
  vocab_size: number;
  hidden_size: number;
  num_layers: number;
  num_heads: number;
  rope_pairing: string;
  cache_dtype: string;
  kv_bytes_per_token: number;
  /** KV cache bytes per token (all layers) for each --cache-dtype, int8 scales and 16-bit rope parts included. */
  kv_bytes_per_token_by_dtype: Record<string, number>;
  layers: Record<string, unknown>[];
  backend: string;
}

/** The facts `mla info` prints, from a config and (when read from files) the weights' header summary. */
export function describe(cfg: ModelConfig, source: string, backend: string, weights?: WeightSummary): InfoResult {
  return {
    source,
    architecture: cfg.arch,
    parameters: weights?.parameters ?? parameterCount(cfg),
    weight_bytes: weights?.bytes ?? null,
    weight_dtypes: weights ? { ...weights.dtypes } : null,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_layers: cfg.numLayers,
    num_heads: cfg.numHeads,
    rope_pairing: cfg.ropePairing,
    cache_dtype: 'f32',
    kv_bytes_per_token: kvBytesPerToken(cfg, 4),
    kv_bytes_per_token_by_dtype: Object.fromEntries(CACHE_DTYPES.map((d) => [d, kvBytesPerTokenFor(cfg, d)])),
    layers: cfg.layers.map((a, i) => ({ layer: i, kind: a.kind, ...attentionKind(a).describe(a).fields, kv_values_per_token: kvValuesPerToken(a) })),
    backend,
  };
}

export const infoSpec = { name: 'info', args: 'MODEL', flags: commonFlags } as const satisfies CommandSpec;

export async function infoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, infoSpec);
  const path = onePositional(positionals, 'MODEL', 'info');
  const backend = resolveBackend(values.backend);
  const { config, weights, source } = inspectModel(path);
  if (values.tokenizer) loadTokenizerPath(values.tokenizer, config.vocabSize);
  const r = describe(config, source, backend.name, weights);
  if (values.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const lines = [
    `model        ${r.source}`,
    `architecture ${r.architecture}`,
    `parameters   ${r.parameters.toLocaleString('en-US')}`,
    `weights      ${weights.bytes.toLocaleString('en-US')} bytes (${Object.entries(weights.dtypes).map(([d, n]) => `${d} ${n.toLocaleString('en-US')}`).join(', ')})`,
    `shape        vocab ${r.vocab_size}, hidden ${r.hidden_size}, layers ${r.num_layers}, heads ${r.num_heads}, rope ${r.rope_pairing}`,
    `KV cache     ${r.kv_bytes_per_token.toLocaleString('en-US')} bytes per token (all layers, ${r.cache_dtype}); by --cache-dtype: ${Object.entries(r.kv_bytes_per_token_by_dtype).map(([d, n]) => `${d} ${n.toLocaleString('en-US')}`).join(', ')}`,
    '',
    table(
      ['layer', 'attention', 'shape', 'KV values/token'],
      config.layers.map((a, i) => [i, a.kind, attentionKind(a).describe(a).shape, kvValuesPerToken(a)]),
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

// mla info MODEL [--json]: architecture, parameters, per-layer attention, KV cache bytes per token.

import { commonFlags, onePositional, parse, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { openModel } from '../infer/open.js';
import { kvBytesPerToken, kvValuesPerToken, type ModelConfig } from '../model/config.js';
import { parameterCount } from '../model/weights.js';
import { attentionKind } from '../model/attention/index.js';

export interface InfoResult {
  source: string;
  architecture: string;
  parameters: number;
  vocab_size: number;
  hidden_size: number;
  num_layers: number;
  num_heads: number;
  rope_pairing: string;
  cache_dtype: string;
  kv_bytes_per_token: number;
  layers: Record<string, unknown>[];
  backend: string;
}

/** The facts `mla info` prints, from a config (cache dtype f32: what generation uses). */
export function describe(cfg: ModelConfig, source: string, backend: string): InfoResult {
  return {
    source,
    architecture: cfg.arch,
    parameters: parameterCount(cfg),
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_layers: cfg.numLayers,
    num_heads: cfg.numHeads,
    rope_pairing: cfg.ropePairing,
    cache_dtype: 'f32',
    kv_bytes_per_token: kvBytesPerToken(cfg, 4),
    layers: cfg.layers.map((a, i) => ({ layer: i, kind: a.kind, ...attentionKind(a).describe(a).fields, kv_values_per_token: kvValuesPerToken(a) })),
    backend,
  };
}

export const infoSpec = { name: 'info', args: 'MODEL', flags: commonFlags } as const satisfies CommandSpec;

export async function infoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, infoSpec);
  const path = onePositional(positionals, 'MODEL', 'info');
  const { model, source } = openModel(path, { tokenizer: values.tokenizer, backend: values.backend });
  const r = describe(model.config, source, model.be.name);
  if (values.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const lines = [
    `model        ${r.source}`,
    `architecture ${r.architecture}`,
    `parameters   ${r.parameters.toLocaleString('en-US')}`,
    `shape        vocab ${r.vocab_size}, hidden ${r.hidden_size}, layers ${r.num_layers}, heads ${r.num_heads}, rope ${r.rope_pairing}`,
    `KV cache     ${r.kv_bytes_per_token.toLocaleString('en-US')} bytes per token (all layers, ${r.cache_dtype})`,
    '',
    table(
      ['layer', 'attention', 'shape', 'KV values/token'],
      model.config.layers.map((a, i) => [i, a.kind, attentionKind(a).describe(a).shape, kvValuesPerToken(a)]),
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

// mla info MODEL [--json]: architecture, parameters, per-layer attention, KV cache bytes per token.

import { commonFlags, onePositional, parse, type CommandSpec } from './args.js';
import { table } from '../report/table.js';
import { openModel } from '../infer/open.js';
import { kvBytesPerToken, kvValuesPerToken, type ModelConfig } from '../model/config.js';
import { parameterCount } from '../model/weights.js';

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
    layers: cfg.layers.map((a, i) =>
      a.kind === 'gqa'
        ? { layer: i, kind: 'gqa', kv_heads: a.numKvHeads, head_dim: a.headDim, qkv_bias: a.qkvBias, kv_values_per_token: kvValuesPerToken(a) }
        : {
            layer: i, kind: 'mla', kv_rank: a.kvRank, rope_dim: a.ropeDim, nope_dim: a.nopeDim, v_dim: a.vDim,
            q_rank: a.qRank, latent_norm: a.latentNorm, kv_values_per_token: kvValuesPerToken(a),
          },
    ),
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
      r.layers.map((l) => [
        l.layer as number,
        l.kind as string,
        l.kind === 'gqa'
          ? `${l.kv_heads} kv heads × ${l.head_dim}${l.qkv_bias ? ', qkv bias' : ''}`
          : `r_kv ${l.kv_rank} + d_r ${l.rope_dim}, d_n ${l.nope_dim}, d_v ${l.v_dim}, q ${l.q_rank === null ? 'full' : 'rank ' + l.q_rank}${l.latent_norm ? ', latent norm' : ''}`,
        l.kv_values_per_token as number,
      ]),
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

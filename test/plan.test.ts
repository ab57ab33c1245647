// mla plan and convert --target: the shapes each engine's fast MLA kernels accept, for a Llama-3.2-1B-shaped
// config (config.json only), a SmolLM-135M-shaped one (too small for the stock shapes), and conversions within them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MlaAttention } from '../src/model/config.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { planTarget } from '../src/convert/plan.js';
import { readTeacherConfig } from '../src/cli/plan.js';
import { UserError } from '../src/errors.js';
import { servingVerdicts, stockMlaProblems } from '../src/export/kinds/mla-stock.js';
import { mla, mlaOk, tempDir } from './helpers.js';
import { convertOptionsFrom, convertSpec } from '../src/cli/convert.js';
import { parse } from '../src/cli/args.js';
import { randomLlama } from './models.js';
import { parseHfConfig } from '../src/io/hfconfig.js';
import { CONVERT_DEFAULTS, defaultCalibSamples, forwardFlopsPerToken, MIN_DEFAULT_CALIB_SAMPLES, withConvertDefaults } from '../src/convert/defaults.js';

const LLAMA_32_1B = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, hidden_act: 'silu', max_position_embeddings: 131072, rms_norm_eps: 1e-5,
  rope_theta: 500000.0, rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  tie_word_embeddings: true, bos_token_id: 128000, eos_token_id: 128001,
};
const SMOLLM_135M = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
  num_attention_heads: 9, num_key_value_heads: 3, hidden_act: 'silu', max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0,
  tie_word_embeddings: true,
};

/** The table row of a target, as trimmed cells after the target name. */
const cells = (out: string) => (t: string): string[] => {
  const line = out.split('\n').find((l) => l.startsWith(`| ${t} `)) ?? '';
  return line.split('|').slice(2, -1).map((c) => c.trim());
};

function configDir(root: string, name: string, cfg: object): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
  return d;
}

test('mla plan prints the per-target table for a Llama-3.2-1B-shaped config', () => {
  const { dir, cleanup } = tempDir();
  try {
    const d = configDir(dir, 'llama-3.2-1b', LLAMA_32_1B);
    const out = mlaOk(['plan', d]);
    console.log(out.split('\n').map((l) => `# ${l}`).join('\n'));
    const row = cells(out);
    // target → [engine, accepted, plan, compression, rope, ranks]
    assert.deepEqual(row('vllm').slice(1, 5), ['512+64, 256+64', '256+64', '3.20×', 'nearest fit']);
    assert.deepEqual(row('sglang').slice(1, 4), ['512+64, 256+64', '256+64', '3.20×']);
    assert.deepEqual(row('llamacpp-cuda').slice(1, 4), ['512+64, 256+64 (heads%32)', '256+64', '3.20×']);
    assert.deepEqual(row('gguf').slice(1, 5), ['any', '224+32', '4.00×', 'nearest fit']);
    assert.deepEqual(row('transformers').slice(2, 4), ['224+32', '4.00×']);
    assert.match(row('transformers')[4]!, /^exact/);
    assert.deepEqual(row('native').slice(2, 6), ['224+32', '4.00×', 'per layer', 'per layer']);
    assert.match(out, /gguf: rope dims 32: no run of 16 teacher pairs .* \(exact rope dims: 2–30\)/);
    const j = JSON.parse(mlaOk(['plan', d, '--target', 'vllm', '--json'])) as { plans: { chosen: { kv_rank: number; rope_dim: number } }[] };
    assert.deepEqual(j.plans.map((p) => [p.chosen.kv_rank, p.chosen.rope_dim]), [[256, 64]]);
    // 512+64 compresses less (1.78×) but is also accepted; --kv-rank 512 asks for it.
    const p512 = planTarget(readTeacherConfig(d), 'vllm', { kvRank: 512, ropeDim: 64 });
    assert.deepEqual([p512.chosen?.kvRank, p512.chosen?.compression.toFixed(2)], [512, '1.78']);
  } finally {
    cleanup();
  }
});

test('mla plan: a SmolLM-135M-shaped model is too small for the stock MLA shapes, and says why', () => {
  const { dir, cleanup } = tempDir();
  try {
    const d = configDir(dir, 'smollm', SMOLLM_135M);
    const out = mlaOk(['plan', d]);
    const row = cells(out);
    assert.deepEqual(row('vllm').slice(2, 5), ['256+64', '1.20×', 'exact (pairs 0…31)']);
    assert.equal(row('llamacpp-cuda')[2], 'none fits');
    assert.match(out, /llamacpp-cuda: 256\+64 not usable: needs heads % 32 == 0 \(the model has 9\)/);
    assert.match(out, /llamacpp-cuda: 512\+64 not usable: .*no compression/);
    const bad = mla(['plan', d, '--target', 'tpu']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--target: expected native, gguf, transformers, vllm, sglang, llamacpp-cuda/);
  } finally {
    cleanup();
  }
});

const base = (over: Partial<ConvertOptions>): ConvertOptions => ({
  plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false, nopeInit: 'mean-rotation', keepLayers: [],
  calib: { samples: 3, length: 32, seed: 7 }, ...over,
});

test('convert --target: stock targets get the latent norm and an exportable rope; shaped targets refuse what does not fit', () => {
  const teacher = randomLlama(8);
  const g = convert(teacher, null, base({ target: 'gguf' }));
  assert.ok((g.config.layers as MlaAttention[]).every((a) => a.latentNorm));
  assert.deepEqual(stockMlaProblems(g.config, 'gguf', false), []);
  assert.ok(g.notes.some((n) => n.includes('--latent-norm added')));
  // vLLM's 256+64 / 512+64 do not fit a model with 2 kv heads × 12.
  assert.throws(() => convert(teacher, null, base({ target: 'vllm' })), (e: unknown) => e instanceof UserError && /accepts only 512\+64, 256\+64 .*none fits/.test(e.message));
  assert.throws(() => convert(teacher, null, base({ target: 'transformers', plan: { kind: 'energy', delta: 0.9 } })), /one kv_lora_rank/);
  // The CLI maps --target to the rope rule: native keeps the per-layer choice, vLLM needs rope_theta alone.
  const rule = (t: string) => convertOptionsFrom(parse(['--target', t], convertSpec).values).ropeRule;
  assert.deepEqual(['native', 'gguf', 'transformers', 'vllm'].map(rule), ['free', 'geometric', 'hf', 'unscaled']);
  assert.equal(convertOptionsFrom(parse([], convertSpec).values).ropeRule, 'geometric');
});

test('export verdicts: which engine refuses which shape', () => {
  const t = randomLlama(8).config;
  const mlaCfg = (R: number, Dr: number, H: number) => ({
    ...t, numHeads: H,
    layers: t.layers.map(() => ({ kind: 'mla' as const, kvRank: R, ropeDim: Dr, nopeDim: 64, vDim: 64, qRank: null, latentNorm: true, bias: false, ropeInvFreq: Array.from({ length: Dr / 2 }, (_, i) => 10000 ** (-i / (Dr / 2))) })),
  });
  assert.match(servingVerdicts(mlaCfg(512, 64, 16), 'hf').join('\n'), /head size 576 accepted \(FlashMLA/);
  assert.match(servingVerdicts(mlaCfg(256, 64, 16), 'hf').join('\n'), /head size 320 accepted \(not FlashMLA/);
  assert.match(servingVerdicts(mlaCfg(12, 4, 16), 'hf').join('\n'), /refuse head size kv_lora_rank \+ qk_rope_head_dim = 16 .*576 or 320/);
  assert.match(servingVerdicts(mlaCfg(256, 64, 8), 'gguf').join('\n'), /no flash-attention MLA kernel for K\/V 320\/256 \(needs heads % 32 == 0, the model has 8\)/);
  assert.match(servingVerdicts(mlaCfg(256, 64, 32), 'gguf').join('\n'), /256\+64 has a flash-attention MLA kernel/);
});

test('the default calibration is capped by the teacher forward FLOPs: 32 samples for small teachers, 12 at 1.2B, ≥ 8', () => {
  const len = CONVERT_DEFAULTS.calib.length;
  const cfg = (raw: object) => parseHfConfig(raw, 'config.json');
  assert.equal(defaultCalibSamples(cfg(SMOLLM_135M), len), 32);
  // Llama-3.2-1B: 2 × 1.236e9 FLOP per token (tied head counted once), 256 tokens a sample → ⌊8e12 / 6.33e11⌋.
  assert.equal(forwardFlopsPerToken(cfg(LLAMA_32_1B)), 2 * 1_235_814_400);
  assert.equal(defaultCalibSamples(cfg(LLAMA_32_1B), len), 12);
  // Shorter samples buy more of them; a 7B teacher gets the floor.
  assert.equal(defaultCalibSamples(cfg(LLAMA_32_1B), 64), 32);
  const mistral7b = { ...LLAMA_32_1B, vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, head_dim: 128, tie_word_embeddings: false, rope_scaling: null };
  assert.equal(defaultCalibSamples(cfg(mistral7b), len), MIN_DEFAULT_CALIB_SAMPLES);
  // An untied head costs its matmul; the embedding lookup is free.
  assert.equal(forwardFlopsPerToken(cfg({ ...SMOLLM_135M, tie_word_embeddings: false })), forwardFlopsPerToken(cfg(SMOLLM_135M)));
  // The library budgets a left-out sample count; a given one (or no teacher) is used as is.
  assert.equal(withConvertDefaults({}, cfg(LLAMA_32_1B)).calib.samples, 12);
  assert.equal(withConvertDefaults({ calib: { samples: 40 } }, cfg(LLAMA_32_1B)).calib.samples, 40);
  assert.equal(withConvertDefaults({}).calib.samples, 32);
  assert.equal(convertOptionsFrom(parse(['--calib-samples', '5'], convertSpec).values).calib.samples, 5);
});

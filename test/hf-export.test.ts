// The stock DeepSeek-V3 export is exact in transformers: a float64 transcription of transformers' DeepSeek-V3
// forward (transformers-deepseek.ts) reading the exported directory gives our logits, including transformers'
// latent norms at eps 1e-6 when the teacher's rms_norm_eps is 1e-5 (the export rescales), tied embeddings, a
// low-rank query, linear and llama3 rope scaling. And the config/metadata/tokenizer files transformers reads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { noGrad } from '../src/autograd/var.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { defaultInvFreq, llama3InvFreq, type MlaAttention, type ModelConfig } from '../src/model/config.js';
import { FLOAT_FIELDS, saveModelDir } from '../src/io/deepseek.js';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { loadModel } from '../src/io/load.js';
import { convert } from '../src/convert/convert.js';
import { exportHf } from '../src/export/hf-export.js';
import { toStockMla } from '../src/export/kinds/mla-stock.js';
import { transformersDeepseekV3Logits } from './transformers-deepseek.js';
import { exportModel } from '../src/export/export.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { loadLlama2cTokenizer } from '../src/io/llama2c-tokenizer.js';
import { loadHfTokenizer } from '../src/io/tokenizer.js';
import { STORIES_BIN, STORIES_TOK, FIXTURES, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');
const ids = Array.from({ length: 19 }, (_, i) => (i * 17 + 5) % 61);

function ours(cfg: ModelConfig, w: Map<string, Tensor>): Float64Array {
  return Float64Array.from(noGrad(() => forward(Model.fromWeights(cfg, w, be), Int32Array.from(ids), 1, ids.length).value.data));
}

/** A converted model with rms_norm_eps 1e-5, tied embeddings, q_lora, and small latents (as distillation may leave
 *  them), so that the latent norms' eps matters. */
function student(opts: { ropeScaling?: Record<string, unknown>; invFreq?: number[] } = {}): { config: ModelConfig; weights: Map<string, Tensor> } {
  const t = randomLlama(31);
  const w = new Map([...t.params].map(([k, v]) => [k, v.value] as [string, Tensor]));
  w.delete('lm_head.weight');
  const cfg: ModelConfig = { ...t.config, rmsNormEps: 1e-5, tieEmbeddings: true, ropeScaling: opts.ropeScaling ?? null, ropeInvFreq: opts.invFreq ?? t.config.ropeInvFreq };
  const r = convert(Model.fromWeights(cfg, w, be), null, {
    plan: { kind: 'rank', rank: 10 }, ropeDim: 6, ropeMethod: 'transmla', basis: 'activation', qRank: 16, latentNorm: true, nopeInit: 'mean-rotation',
    keepLayers: [], calib: { samples: 3, length: 32, seed: 3 },
  });
  const weights = new Map(r.weights);
  r.config.layers.forEach((a, i) => {
    const p = `model.layers.${i}.self_attn`;
    const m = a as MlaAttention;
    for (const [n, rows] of [[`${p}.kv_a_proj_with_mqa.weight`, m.kvRank], [`${p}.q_a_proj.weight`, m.qRank!]] as const) {
      const x = weights.get(n)!;
      const d = Float32Array.from(x.data);
      for (let k = 0; k < rows * x.shape[1]!; k++) d[k]! *= 1e-3;
      weights.set(n, new Tensor(x.shape, d));
    }
  });
  return { config: r.config, weights };
}

test("HF export equals a transcription of transformers' DeepSeek-V3 forward (float64), latent-norm eps rescaled", () => {
  const { dir, cleanup } = tempDir();
  try {
    const s = student();
    const mine = ours(s.config, s.weights);
    const rep = exportHf(join(dir, 'hf'), s.config, s.weights);
    assert.ok(rep.notes.some((n) => /rms_norm_eps 0.00001 → 0.000001/.test(n) && /untied/.test(n)), rep.notes.join('\n'));
    const theirs = transformersDeepseekV3Logits(join(dir, 'hf'), ids);
    const err = relError(theirs, mine);
    console.log(`# transformers transcription vs ours (rescaled export): relative logit error ${err.toExponential(2)}`);
    assert.ok(err <= 1e-6, `relative logit error ${err}`);
    // vLLM / llama.cpp read the same files with rms_norm_eps on the latent norms: also exact, since it is now 1e-6.
    assert.ok(relError(transformersDeepseekV3Logits(join(dir, 'hf'), ids, { latentEps: 'config' }), mine) <= 1e-6);
    // Without the rescale transformers would differ (this is what the test guards against).
    const stock = toStockMla(s.config, s.weights, 'hf', false, 'x');
    saveModelDir(join(dir, 'naive'), stock.config, stock.weights, { stock: true });
    const naive = relError(transformersDeepseekV3Logits(join(dir, 'naive'), ids), mine);
    console.log(`# without the rescale: ${naive.toExponential(2)} in transformers, exact with rms_norm_eps latents (vLLM, llama.cpp)`);
    assert.ok(naive > 1e-4, `the naive export should differ in transformers (got ${naive})`);
    assert.ok(relError(transformersDeepseekV3Logits(join(dir, 'naive'), ids, { latentEps: 'config' }), mine) <= 1e-6);
  } finally {
    cleanup();
  }
});

test('HF export of rope scaling: linear factor and llama3 (pairs 0, s, 2s, …) are exact in transformers', () => {
  const { dir, cleanup } = tempDir();
  try {
    const L3 = { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 };
    const inv = llama3InvFreq(defaultInvFreq(10000, 12), L3);
    const s = student({ ropeScaling: L3, invFreq: inv });
    const cases: [string, number[], RegExp][] = [
      ['linear', [inv[3]!, inv[4]!, inv[5]!], /^linear$/], // pairs 3–5: all divided by 4, a geometric run with a linear factor
      ['llama3', [inv[0]!, inv[1]!, inv[2]!], /^llama3$/], // pairs 0–2: 0 is bent, 1–2 divided by 4: only llama3 can say it
    ];
    for (const [name, f, type] of cases) {
      const cfg: ModelConfig = { ...s.config, layers: s.config.layers.map((a) => ({ ...(a as MlaAttention), ropeInvFreq: f })) };
      exportHf(join(dir, name), cfg, s.weights);
      const json = JSON.parse(readFileSync(join(dir, name, 'config.json'), 'utf8')) as { rope_scaling: { rope_type: string } };
      assert.match(json.rope_scaling.rope_type, type);
      const err = relError(transformersDeepseekV3Logits(join(dir, name), ids), ours(cfg, s.weights));
      assert.ok(err <= 1e-6, `${name}: relative logit error ${err}`);
      const back = loadModel(join(dir, name));
      assert.ok(relError(ours(back.config, back.weights), ours(cfg, s.weights)) <= 1e-6, `${name}: our loader reads the rope_scaling back`);
    }
  } finally {
    cleanup();
  }
});

test('HF export files: float fields written as floats, no absolute path in the safetensors metadata', () => {
  const { dir, cleanup } = tempDir();
  try {
    const s = student();
    const out = join(dir, 'hf');
    exportHf(out, s.config, s.weights, { source: join(dir, 'some', 'where', 'student') });
    const text = readFileSync(join(out, 'config.json'), 'utf8');
    assert.match(text, /"routed_scaling_factor": 1\.0,/);
    for (const k of FLOAT_FIELDS) {
      for (const m of text.matchAll(new RegExp(`"${k}": ([^,\\n}]+)`, 'g'))) assert.match(m[1]!, /[.e]/, `${k} written as ${m[1]}`);
    }
    const ints = ['vocab_size', 'hidden_size', 'kv_lora_rank', 'first_k_dense_replace', 'n_routed_experts', 'num_experts_per_tok'];
    const json = JSON.parse(text) as Record<string, unknown>;
    for (const k of ints) assert.ok(Number.isInteger(json[k]), k);
    const meta = readSafetensorsHeader(join(out, 'model.safetensors')).metadata;
    assert.equal(meta.mla_upcycle_source, 'student');
    assert.ok(!Object.values(meta).some((v) => v.includes(dir)), JSON.stringify(meta));
  } finally {
    cleanup();
  }
});

test('HF export of a llama2.c model ships tokenizer.json + tokenizer_config.json that tokenize as llama2.c does', () => {
  const { dir, cleanup } = tempDir();
  try {
    const t = loadLlama2c(STORIES_BIN);
    const r = convert(Model.fromWeights(t.config, t.weights, be), null, {
      plan: { kind: 'ratio', ratio: 4 }, ropeDim: 4, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: true, nopeInit: 'identity',
      keepLayers: [], calib: { samples: 2, length: 16, seed: 1 },
    });
    const conv = join(dir, 'conv');
    saveModelDir(conv, r.config, r.weights, { copyFiles: [{ from: STORIES_TOK, name: 'tokenizer.bin' }] });
    const out = join(dir, 'hf');
    const dump = join(dir, 'ours.json');
    const prompt = 'Once upon a time, there was a cat.';
    const res = exportModel(conv, { format: 'hf', out, dtype: 'f32', padRanks: false, overwrite: false, dumpLogits: dump, prompt });
    assert.ok(res.notes.some((n) => n.includes('tokenizer.json')), res.notes.join('\n'));
    assert.ok(existsSync(join(out, 'tokenizer.json')) && existsSync(join(out, 'tokenizer_config.json')) && !existsSync(join(out, 'tokenizer.bin')));
    const cfg = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([cfg.tokenizer_class, cfg.bos_token, cfg.eos_token, cfg.add_bos_token], ['PreTrainedTokenizerFast', '<s>', '</s>', true]);
    const hf = loadHfTokenizer(out);
    const tok = loadLlama2cTokenizer(STORIES_TOK, 512);
    const lines = readFileSync(join(FIXTURES, 'heldout', 'stories-heldout.txt'), 'utf8').split('\n').filter(Boolean).slice(0, 40);
    for (const l of [...lines, 'Héllo wörld 😀 tab\there  two  spaces', ' leading space']) assert.deepEqual(hf.encode(l, true), tok.encode(l, true), l);
    assert.equal(hf.decode(hf.encode('Once upon a time, Lily', true)), 'Once upon a time, Lily');
    // What scripts/check-transformers.py does, with the transcription standing in for transformers.
    const d = JSON.parse(readFileSync(dump, 'utf8')) as { prompt: string; ids: number[]; vocab_size: number; logits: number[][] };
    assert.deepEqual(d.ids, hf.encode(prompt, true));
    const err = relError(transformersDeepseekV3Logits(out, d.ids), Float64Array.from(d.logits.flat()));
    assert.ok(err <= 1e-5, `dumped logits vs transcription: ${err}`);
  } finally {
    cleanup();
  }
});

// The seed papers' recipes (convert/recipes.ts) and the 'drop' no-rope keys they use (d_n = D − d_r): an exact
// identity (with one kv head the rope key IS that head's pair, so dropping its dims loses nothing the residual kept),
// the shapes, absorbed decoding, the stock transformers export, and the CLI's refusal of a flag that would change a recipe.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { relError } from '../src/tensor/tensor.js';
import { noGrad } from '../src/autograd/var.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { KVCache } from '../src/model/cache.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { RECIPE_OPTIONS, RECIPES } from '../src/convert/recipes.js';
import { saveModelDir } from '../src/io/deepseek.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { exportModel } from '../src/export/export.js';
import { transformersDeepseekV3Logits } from './transformers-deepseek.js';
import { STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: false, nopeInit: 'identity', keepLayers: [],
    calib: { samples: 3, length: 40, seed: 5 }, ...over,
  };
}

const ids = Int32Array.from({ length: 2 * 29 }, (_, i) => (i * 37 + 11) % 61);
const logits = (m: Model, B: number, T: number) => noGrad(() => forward(m, ids.subarray(0, B * T), B, T).value.data);

for (const bias of [false, true]) {
  for (const nopeInit of ['identity', 'mean-rotation'] as const) {
    test(`one kv head: dropping the rope pairs' dims equals keeping their (zero) residual (bias ${bias}, ${nopeInit})`, () => {
      const teacher = randomLlama(17, bias, be, 1);
      // Full rank of [K_nope; V]: (12 − 4) + 12 non-zero rows.
      const base = opts({ plan: { kind: 'rank', rank: 20 }, ropeDim: 4, nopeInit });
      const residual = convert(teacher, null, { ...base, nopeKeys: 'residual' });
      const drop = convert(teacher, null, { ...base, nopeKeys: 'drop' });
      const a = drop.config.layers[0]!;
      assert.ok(a.kind === 'mla' && a.nopeDim === 8 && a.vDim === 12 && a.ropeDim === 4, JSON.stringify(a));
      assert.deepEqual(drop.weights.get('model.layers.0.self_attn.kv_b_proj.weight')!.shape, [6 * (8 + 12), 20]);
      assert.deepEqual(drop.weights.get('model.layers.0.self_attn.q_proj.weight')!.shape, [6 * (8 + 4), 48]);
      const err = relError(logits(Model.fromWeights(drop.config, drop.weights, be), 2, 29), logits(Model.fromWeights(residual.config, residual.weights, be), 2, 29));
      assert.ok(err <= 1e-5, `relative logit error ${err}`);
    });
  }
}

test('x-ecomla on stories260K: d_n = D − d_r, absorbed decoding equals the full forward, and the transformers export is exact', () => {
  const t = loadLlama2c(STORIES_BIN);
  const teacher = Model.fromWeights(t.config, t.weights, be);
  const r = convert(teacher, null, opts({ ...RECIPE_OPTIONS['x-ecomla'], ropeDim: 4, latentNorm: true }));
  const D = t.config.layers[0]!.kind === 'gqa' ? t.config.layers[0]!.headDim : 0;
  for (const a of r.config.layers) assert.ok(a.kind === 'mla' && a.nopeDim === D - 4 && a.vDim === D, JSON.stringify(a));
  const m = Model.fromWeights(r.config, r.weights, be);
  const T = 21;
  const full = logits(m, 1, T);
  const V = m.config.vocabSize;
  noGrad(() => {
    const cache = new KVCache(m, 1, T);
    forward(m, ids.subarray(0, 7), 1, 7, { cache });
    for (let p = 7; p < T; p++) {
      const step = forward(m, ids.subarray(p, p + 1), 1, 1, { cache }).value.data;
      const err = relError(step, full.subarray(p * V, (p + 1) * V));
      assert.ok(err <= 1e-5, `position ${p}: relative error ${err}`);
    }
  });
  const { dir, cleanup } = tempDir();
  try {
    saveModelDir(join(dir, 'conv'), r.config, r.weights, { copyFiles: [{ from: STORIES_TOK, name: 'tokenizer.bin' }] });
    const dump = join(dir, 'ours.json');
    exportModel(join(dir, 'conv'), { format: 'hf', out: join(dir, 'hf'), dtype: 'f32', padRanks: false, overwrite: false, dumpLogits: dump, prompt: 'Once upon a time' });
    const d = JSON.parse(readFileSync(dump, 'utf8')) as { ids: number[]; logits: number[][] };
    const err = relError(transformersDeepseekV3Logits(join(dir, 'hf'), d.ids), Float64Array.from(d.logits.flat()));
    assert.ok(err <= 1e-5, `exported logits vs transcription: ${err}`);
  } finally {
    cleanup();
  }
});

test('mla convert --recipe: sets its options, records them, and refuses a flag that would change the recipe', () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = ['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--kv-ratio', '4', '--rope-dim', '4'];
    for (const recipe of RECIPES) {
      const out = join(dir, recipe);
      const r = mla([...base, '--out', out, '--recipe', recipe, '--calib-samples', '2', '--calib-len', '32']);
      assert.equal(r.status, 0, r.stderr);
      const rec = JSON.parse(readFileSync(join(out, 'conversion.json'), 'utf8')) as Record<string, unknown>;
      const o = RECIPE_OPTIONS[recipe];
      assert.deepEqual([rec.rope_method, rec.basis, rec.nope_init, rec.nope_keys, rec.kv_balance], [o.ropeMethod, o.basis, o.nopeInit, o.nopeKeys, o.kvBalance], recipe);
      // transmla's freqfold auto is resolved (head dim 8, rope dim 4: folds 2 or 4) and reported.
      if (recipe === 'transmla') {
        assert.ok(rec.freqfold === 2 || rec.freqfold === 4, String(rec.freqfold));
        assert.match(r.stdout, new RegExp(`^freqfold auto: ${String(rec.freqfold)} \\(calibration KL of the full-rank RoRoPE conversion: 2: \\d`, 'm'));
      } else assert.equal(rec.freqfold, 1, recipe);
    }
    const clash = mla([...base, '--out', join(dir, 'x'), '--recipe', 'x-ecomla', '--basis', 'activation']);
    assert.equal(clash.status, 1);
    assert.match(clash.stderr, /^error: --recipe x-ecomla sets --basis itself/m);
    const bad = mla([...base, '--out', join(dir, 'y'), '--recipe', 'ecomla']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--recipe: expected x-ecomla, mha2mla, transmla, got 'ecomla'/);
  } finally {
    cleanup();
  }
});

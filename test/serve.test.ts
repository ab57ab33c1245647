// Conversions that serve: the default rope choice keeps the same pairs in every layer as a geometric run, so the
// default conversion (transmla, and mha2mla) exports to GGUF and the stock DeepSeek-V3 layout; the shared choice
// finds the exportable runs of a Llama-3 (llama3 rope scaling) teacher, and says when there are none.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { defaultInvFreq, llama3InvFreq, type MlaAttention } from '../src/model/config.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { geometricFit } from '../src/io/deepseek.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { ROPE_METHODS, nearestGeometric, geometricDeviation, leastSquaresGeometric, sharedPairs } from '../src/convert/rope-select.js';
import { ropeAccepts } from '../src/convert/targets.js';
import { stockMlaProblems } from '../src/export/kinds/mla-stock.js';
import { STORIES_BIN } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: true, nopeInit: 'mean-rotation', keepLayers: [],
    calib: { samples: 3, length: 48, seed: 7 }, ...over,
  };
}

const LLAMA3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };

for (const method of ROPE_METHODS) {
  test(`default rope choice (${method}): every layer keeps the same geometric run, so GGUF and stock DeepSeek-V3 accept it`, () => {
    for (const teacher of [Model.fromWeights(loadLlama2c(STORIES_BIN).config, loadLlama2c(STORIES_BIN).weights, be), randomLlama(5)]) {
      const r = convert(teacher, null, opts({ ropeMethod: method, ropeDim: 4 }));
      const freqs = new Set((r.config.layers as MlaAttention[]).map((a) => a.ropeInvFreq.join(',')));
      assert.equal(freqs.size, 1, 'one frequency set for all layers');
      assert.ok(geometricFit((r.config.layers[0] as MlaAttention).ropeInvFreq));
      assert.deepEqual(stockMlaProblems(r.config, 'gguf', false), []);
      assert.deepEqual(stockMlaProblems(r.config, 'hf', false), []);
      assert.ok(r.notes.some((n) => /every layer keeps teacher pairs .* exact in stock engines/.test(n)), r.notes.join('\n'));
    }
  });
}

test('shared pairs under llama3 rope scaling: an exportable run is chosen when one exists, the nearest run otherwise', () => {
  // Llama-3.2-1B's rope: head dim 64, theta 500000: pairs 0..14 unscaled, 15..17 bent, 18..31 divided by 8.
  const inv = llama3InvFreq(defaultInvFreq(500000, 64), LLAMA3);
  const flat = (n: number) => [Array.from({ length: 32 }, (_, j) => (j < n ? 1 : 0.5))];
  for (const count of [8, 14, 15]) {
    const c = sharedPairs(flat(32), count, inv, (fr) => ropeAccepts('geometric', fr));
    assert.ok(c.exact, `${count} pairs`);
    assert.ok(geometricFit(c.pairs.map((j) => inv[j]!)), `${count} pairs: ${c.pairs.join(',')}`);
    assert.ok(!c.pairs.some((j) => j >= 15 && j <= 17), 'no bent pair');
  }
  // Scores steer the choice: favouring the lowest frequencies picks a run among pairs 18..31.
  const low = sharedPairs([Array.from({ length: 32 }, (_, j) => j)], 8, inv, (fr) => ropeAccepts('geometric', fr));
  assert.ok(low.exact && low.pairs.every((j) => j >= 18), low.pairs.join(','));
  // 16 pairs (rope dim 32): no run avoids the bent band; the nearest one is taken and flagged.
  const none = sharedPairs(flat(32), 16, inv, (fr) => ropeAccepts('geometric', fr));
  assert.equal(none.exact, false);
  assert.equal(none.pairs.length, 16);
  // vLLM/SGLang: rope_theta alone, so the run must start at pair 0 (frequency 1).
  const u = sharedPairs([Array.from({ length: 32 }, (_, j) => j)], 8, inv, (fr) => ropeAccepts('unscaled', fr));
  assert.ok(u.exact && u.pairs[0] === 0, u.pairs.join(','));
});

test('nearest geometric runs: exact on a geometric run; otherwise the run through the most pairs, and least squares', () => {
  const g = defaultInvFreq(10000, 8).map((f) => f / 3);
  nearestGeometric(g).forEach((x, i) => assert.ok(Math.abs(x - g[i]!) <= 1e-12 * g[i]!));
  assert.ok(geometricDeviation(g) < 1e-12);
  const bent = [1, 0.5, 0.2, 0.125];
  // The run through the most pairs moves only the odd one; least squares moves every pair a little.
  nearestGeometric(bent).forEach((x, i) => assert.ok(Math.abs(x - [1, 0.5, 0.25, 0.125][i]!) < 1e-12));
  const ls = leastSquaresGeometric(bent);
  assert.ok(geometricFit(ls) && ls.every((x, i) => Math.abs(x - bent[i]!) > 1e-6));
  assert.ok(geometricDeviation(bent) > 0.05);
});

// The budgeted plan search and automatic hybrids (convert/search.ts): every candidate holds the KV budget, the KL it
// reports is the KL an independent conversion and forward give on the held-out samples, the per-layer plan moves rank
// without changing the total, a one-rank target gets no per-layer ranks, and auto:K keeps the costliest layers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noGrad } from '../src/autograd/var.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { calibrationSequences } from '../src/convert/calibrate.js';
import { PlanSearch } from '../src/convert/search.js';
import { STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { randomLlama } from './models.js';
import { join } from 'node:path';

const be = getBackend('ref');

const opts = (over: Partial<ConvertOptions> = {}): ConvertOptions => ({
  plan: { kind: 'ratio', ratio: 3 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false, nopeInit: 'mean-rotation', keepLayers: [],
  calib: { samples: 3, length: 24, seed: 9 }, ...over,
});

/** Mean per-token KL(teacher ‖ student), computed here independently of the search (float64 softmax). */
function klOn(teacher: Model, student: Model, seqs: number[][]): number {
  const V = teacher.config.vocabSize;
  let sum = 0;
  let n = 0;
  for (const s of seqs) {
    const [p, q] = [teacher, student].map((m) => noGrad(() => Array.from(forward(m, Int32Array.from(s), 1, s.length).value.data)));
    for (let t = 0; t < s.length; t++) {
      const row = (x: number[]) => {
        const r = x.slice(t * V, (t + 1) * V);
        const m = Math.max(...r);
        const lse = m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0));
        return r.map((v) => v - lse);
      };
      const lp = row(p!);
      const lq = row(q!);
      sum += lp.reduce((a, v, i) => a + Math.exp(v) * (v - lq[i]!), 0);
      n++;
    }
  }
  return sum / n;
}

test('search: every candidate at the KV budget, KL as an independent conversion measures it, per-layer ranks keep the total', () => {
  const teacher = randomLlama(21, true, be);
  const o = opts();
  const s = new PlanSearch(teacher, null, o, { samples: 2 });
  const r = s.plan(o);
  assert.ok(r.tried.length >= 3, `${r.tried.length} candidates`);
  for (const c of r.tried) assert.ok(Math.abs(c.compression - 3) / 3 < 0.1, `compression ${c.compression}`);
  assert.ok(r.chosen.kl <= r.uniform.kl);
  assert.equal(r.tried[0], r.uniform);
  // The chosen options converted from scratch (their own calibration, same seed) and scored here give the same KL.
  const held = calibrationSequences(teacher, null, { ...o.calib, samples: 2, seed: o.calib.seed + 1 });
  const fresh = convert(teacher, null, r.options);
  const kl = klOn(teacher, Model.fromWeights(fresh.config, fresh.weights, be), held);
  assert.ok(Math.abs(kl - r.chosen.kl) <= 1e-6 * Math.max(1, kl), `independent KL ${kl} vs reported ${r.chosen.kl}`);
  // The teacher against itself: zero.
  assert.ok(klOn(teacher, teacher, held) < 1e-12);
  const perLayer = r.tried.filter((c) => new Set(c.ranks).size > 1);
  for (const c of perLayer) {
    const total = (c.ranks as number[]).reduce((a, b) => a + b, 0);
    const uniform = r.tried.find((u) => u.ropeDim === c.ropeDim && u.nopeInit === c.nopeInit && new Set(u.ranks).size === 1)!;
    assert.equal(total, (uniform.ranks as number[]).reduce((a, b) => a + b, 0), 'rank moved, total kept');
  }
});

test('search with a one-rank target (gguf) never chooses per-layer ranks', () => {
  const teacher = randomLlama(22, false, be);
  const o = opts({ target: 'gguf', ropeRule: 'geometric' });
  const r = new PlanSearch(teacher, null, o, { samples: 1 }).plan(o);
  for (const c of r.tried) assert.equal(new Set(c.ranks).size, 1, JSON.stringify(c.ranks));
});

test('auto:K keeps the layers whose conversion alone costs the most KL', () => {
  const teacher = randomLlama(23, false, be);
  const o = opts({ plan: { kind: 'ratio', ratio: 1.5 } });
  const s = new PlanSearch(teacher, null, o, { samples: 2 });
  const { keep, cost } = s.autoKeep(o, 1);
  assert.equal(cost.length, 2);
  assert.deepEqual(keep, [cost[0]! >= cost[1]! ? 0 : 1]);
  assert.ok(cost.every((c) => c > 0 && Number.isFinite(c)), cost.join(','));
  assert.throws(() => s.autoKeep(o, 2), /auto:2: expected auto:K with 1 ≤ K ≤ 1/);
});

test('mla convert --search / --keep-layers auto:K: the chosen plan printed against the uniform one; bad values refused', () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = ['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--calib-samples', '4', '--calib-len', '32', '--search-samples', '2'];
    const r = mla([...base, '--out', join(dir, 'a'), '--kv-ratio', '4', '--search', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { search: { chosen: { kl: number }; uniform: { kl: number } }; compression: number };
    assert.ok(j.search.chosen.kl <= j.search.uniform.kl);
    assert.ok(Math.abs(j.compression - 4) < 0.4, String(j.compression));
    const auto = mla([...base, '--out', join(dir, 'b'), '--kv-ratio', '2', '--keep-layers', 'auto:1']);
    assert.equal(auto.status, 0, auto.stderr);
    assert.match(auto.stdout, /^auto:1: keeping layers \d as original attention/m);
    for (const [args, re] of [
      [['--keep-layers', 'auto:0'], /--keep-layers: expected auto:K with K a positive integer/],
      [['--keep-layers', 'auto:5'], /--keep-layers auto:5: expected auto:K with 1 ≤ K ≤ 4/],
      [['--search', '--energy', '0.9'], /--search: needs a KV budget/],
    ] as const) {
      const bad = mla([...base, '--out', join(dir, 'c'), ...args]);
      assert.equal(bad.status, 1, bad.stdout);
      assert.match(bad.stderr, re);
    }
  } finally {
    cleanup();
  }
});

// Library contracts: distill leaves the caller's student untouched (it returns the trained one), and perplexity's
// windows equal the straightforward definition on random streams of several lengths and window sizes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { windows } from '../src/eval/perplexity.js';
import { distill, type DistillSettings } from '../src/train/distill.js';
import { Batcher } from '../src/train/data.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { convert } from '../src/convert/convert.js';
import { withConvertDefaults } from '../src/convert/defaults.js';
import { Model } from '../src/model/model.js';
import { randomLlama } from './models.js';
import { tempDir } from './helpers.js';

/** The definition: windows of ctx consecutive tokens from the start, the last one shorter, one-token windows dropped. */
function windowsByDefinition(ids: number[], ctx: number): number[][] {
  const out: number[][] = [];
  for (let s = 0; s < ids.length; s += ctx) if (ids.slice(s, s + ctx).length >= 2) out.push(ids.slice(s, s + ctx));
  return out;
}

test('perplexity windows equal the definition (lengths 0..1001, ctx 1..256, arrays and Int32Array)', () => {
  const rng = mulberry32(7);
  for (const n of [0, 1, 2, 3, 17, 100, 257, 1001]) {
    const ids = Array.from({ length: n }, () => Math.floor(rng() * 512));
    for (const ctx of [1, 2, 3, 7, 16, 256]) {
      const want = windowsByDefinition(ids, ctx);
      assert.deepEqual(windows(ids, ctx), want, `n ${n}, ctx ${ctx}`);
      assert.deepEqual(windows(Int32Array.from(ids), ctx), want, `Int32Array, n ${n}, ctx ${ctx}`);
    }
  }
});

test("distill trains a copy: the caller's student keeps its parameters and values; the result holds the trained one", () => {
  const teacher = randomLlama(1);
  const c = convert(teacher, null, withConvertDefaults({ plan: { kind: 'rank', rank: 8 }, ropeDim: 4, ropeMethod: 'ecomla', basis: 'weight', calib: { samples: 2, length: 8 } }));
  const student = Model.fromWeights(c.config, c.weights, teacher.be);
  const before = new Map([...student.params].map(([n, v]) => [n, { v, data: Float64Array.from(v.value.data) }]));
  const rng = mulberry32(3);
  const seqs = Array.from({ length: 8 }, () => Array.from({ length: 9 }, () => Math.floor(rng() * 61)));
  const settings: DistillSettings = {
    steps: 2, batch: 2, seq: 8, accum: 1, lr: 1e-2, warmup: 0, minLrRatio: 0.1, clip: 1, weightDecay: 0, klWeight: 1, ceWeight: 0,
    temperature: 1, train: 'all', seed: 1, evalEvery: 2, checkpointEvery: 2,
  };
  const { dir, cleanup } = tempDir();
  try {
    const r = distill({ teacher, student, train: new Batcher(seqs, 8, 2, 1), evalSeqs: seqs.slice(0, 2), settings, outDir: dir, copyFiles: [] });
    assert.notEqual(r.student, student);
    assert.equal(student.params.size, before.size);
    for (const [name, v] of student.params) {
      const b = before.get(name)!;
      assert.equal(v, b.v, `${name}: the same parameter object`);
      assert.deepEqual(Float64Array.from(v.value.data), b.data, `${name}: unchanged values`);
    }
    const moved = [...r.student.params].filter(([n, v]) => v.value.data.some((x, i) => x !== before.get(n)!.data[i]));
    assert.ok(moved.length > 0, 'the returned student trained');
  } finally {
    cleanup();
  }
});

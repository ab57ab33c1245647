// Leak test (STYLE.md item 11): live buffers, counted per backend pool (tensor/storage.ts), return to their baseline
// after 1,000 generation steps of a GQA model and of its MLA conversion (latent cache) and after 100 distillation
// steps with gradient accumulation, clipping and held-out evaluation; between generation steps they stay flat.
// Also: tidy frees what it does not return, the tape frees its saved tensors, dispose is checked on use.
// A random 2-layer model keeps it to a few seconds per backend.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { keep, liveBuffers, tidy } from '../src/tensor/storage.js';
import { Var, backward } from '../src/autograd/var.js';
import { Functions } from '../src/autograd/functions.js';
import { Model } from '../src/model/model.js';
import { generate } from '../src/model/generate.js';
import { convert } from '../src/convert/convert.js';
import { distill, type DistillSettings } from '../src/train/distill.js';
import { Batcher } from '../src/train/data.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { randomLlama } from './models.js';
import { tempDir } from './helpers.js';

test('tidy frees what fn made and did not return; keep() and returned tensors survive; dispose is checked on use', () => {
  const before = liveBuffers();
  const kept = tidy(() => {
    const a = Tensor.zeros([3, 4]);
    const b = Tensor.zeros([5]);
    keep(b);
    Tensor.zeros([7]); // dropped
    const nested = tidy(() => [Tensor.zeros([2]), Tensor.zeros([9])][0]!); // one returned from the inner scope
    return { a: a.reshape([12]), b, nested };
  });
  assert.equal(liveBuffers().buffers, before.buffers + 3);
  assert.equal(liveBuffers().bytes, before.bytes + 4 * (12 + 5 + 2));
  kept.a.dispose();
  assert.throws(() => kept.a.data, /used after dispose/);
  assert.throws(() => getBackend('ref').run('affine', [kept.a], { a: 1, b: 0 }), /ref\.affine: input 0 \[12\] was used after dispose/);
  kept.b.dispose();
  kept.nested.dispose();
  assert.deepEqual(liveBuffers(), before);
  assert.throws(() => tidy(() => { Tensor.zeros([4]); throw new Error('boom'); }), /boom/);
  assert.deepEqual(liveBuffers(), before, 'a throwing fn still frees its tensors');
});

test('backward frees the tape: saved tensors and intermediate gradients; only leaf gradients stay', () => {
  const be = getBackend('ref');
  const F = new Functions(be);
  const rng = mulberry32(3);
  const x = Var.param(Tensor.rand([4, 6], rng));
  const w = Var.param(Tensor.rand([6], rng, 0.5, 1.5));
  const start = liveBuffers().buffers;
  // x feeds three nodes (add twice, mul): its gradient is accumulated inside backward.
  const loss = F.sum(F.mul(F.rmsnorm(F.add(x, x), w, 1e-6), x));
  const afterForward = liveBuffers().buffers;
  assert.equal(afterForward - start, 5, 'forward: add, rmsnorm (y, rstd), mul, sum');
  backward(be, loss);
  assert.ok(x.grad && w.grad);
  // Every intermediate gradient and rmsnorm's rstd are gone; the two leaf gradients were added.
  assert.equal(liveBuffers().buffers, afterForward - 1 + 2);
  assert.equal(loss.value.data.length, 1, 'activations stay readable after backward');
});

test('cpu op outputs are recycled only when nobody was handed their array: a read-out array keeps its values', (t) => {
  if (!availableBackends().includes('cpu')) {
    t.skip('cpu backend not built');
    return;
  }
  const be = getBackend('cpu');
  const rng = mulberry32(5);
  const a = Tensor.rand([1, 777], rng);
  const b = Tensor.rand([1, 777], rng);
  const sum = Array.from(a.data, (x, i) => x + b.data[i]!);
  const before = liveBuffers();
  // Disposed without a read: its array comes back, zeroed, as the next output of that length (then overwritten).
  const [y] = be.run('add', [a, b], {});
  const arr = y.storage.kernelHost(); // what the addon is given: not a loan
  y.dispose();
  const [z] = be.run('affine', [a], { a: 2, b: 0 });
  assert.equal(z.storage.kernelHost(), arr, 'the disposed output array is reused');
  assert.deepEqual(Array.from(z.data), Array.from(a.data, (x) => Math.fround(2 * x)), 'the reused array holds the new op output');
  z.dispose();
  // Read out through .data: the caller may keep the array, so it must never be reused.
  const kept = tidy(() => be.run('add', [a, b], {})[0].data);
  for (let i = 0; i < 20; i++) tidy(() => { be.run('affine', [a], { a: -3, b: 1 }); });
  assert.deepEqual(Array.from(kept), sum.map(Math.fround), 'an array read out before dispose keeps its values');
  assert.deepEqual(liveBuffers(), before);
});

function withContext(m: Model, maxPositions: number): Model {
  return Model.fromWeights({ ...m.config, maxPositions }, m.weights(), m.be);
}

// The full counts run on the fastest backend here; ref (20 s for them) runs a fifth when the cpu backend is built.
const fastest = availableBackends().at(-1)!;
for (const name of availableBackends()) {
  const [genSteps, trainSteps] = name === fastest ? [1000, 100] : [200, 20];
  test(`${name}: ${genSteps} generation steps (GQA and MLA latent cache) and ${trainSteps} distillation steps leave no live buffers`, () => {
    const be = getBackend(name);
    const teacher = withContext(randomLlama(11, false, be), 1024);
    const conv = convert(teacher, null, {
      plan: { kind: 'ratio', ratio: 2 }, ropeDim: 6, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: false,
      nopeInit: 'identity', keepLayers: [], calib: { samples: 0, length: 0, seed: 0 },
    });
    const student = Model.fromWeights(conv.config, conv.weights, be);

    for (const [kind, model] of [['gqa', teacher], ['mla', student]] as const) {
      const before = liveBuffers();
      const during: number[] = [];
      const out = generate(model, [1], {
        maxTokens: genSteps, temperature: 1, topP: 0.9, seed: 5, onToken: () => during.push(liveBuffers().buffers),
      });
      assert.equal(out.length, genSteps, `${kind}: generated ${out.length} tokens`);
      // Between steps only the cache is live: the count is the same after every token.
      assert.equal(Math.max(...during), Math.min(...during), `${kind}: live buffers vary between generation steps`);
      assert.deepEqual(liveBuffers(), before, `${kind}: live buffers after generation`);
    }

    const { dir, cleanup } = tempDir();
    try {
      const rng = mulberry32(2);
      const seqs = Array.from({ length: 12 }, () => Array.from({ length: 17 }, () => Math.floor(rng() * 61)));
      const settings: DistillSettings = {
        steps: trainSteps, batch: 2, seq: 16, accum: 2, lr: 1e-3, warmup: 5, minLrRatio: 0.1, clip: 1, weightDecay: 0.01,
        klWeight: 1, ceWeight: 0.5, temperature: 1, train: 'all', seed: 1, evalEvery: trainSteps / 2, checkpointEvery: 1000,
      };
      const before = liveBuffers();
      const during: number[] = [];
      const trained = distill({
        teacher, student, train: new Batcher(seqs, 16, 2, 1), evalSeqs: seqs.slice(0, 3), settings, outDir: dir,
        copyFiles: [], onLog: (l) => { if (l.loss !== undefined) during.push(liveBuffers().buffers); },
      });
      assert.equal(during.length, trainSteps);
      // (Counts taken inside a step vary: clipping replaces the gradients. The step's tidy frees them all.)
      // What remains is the trained student's own weights (distill gives trained parameters their own buffers).
      assert.equal(liveBuffers().buffers, before.buffers + trained.student.params.size);
      for (const v of trained.student.params.values()) v.value.dispose();
      assert.deepEqual(liveBuffers(), before, 'live buffers after distillation');
    } finally {
      cleanup();
    }
  });
}

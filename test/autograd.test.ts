// Finite-difference checks of whole-model gradients through the tape (float64 on the ref backend): a GQA teacher
// and a converted MLA student (with latent norm, low-rank query, biases), under KL and cross-entropy losses,
// at normal and extreme logit scales.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor/tensor.js';
import type { Backend } from '../src/tensor/backend.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { backward, type Var } from '../src/autograd/var.js';
import { refBackend } from '../src/backends/ref/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { convert } from '../src/convert/convert.js';
import { randomLlama } from './models.js';

const ref64: Backend = { ...refBackend, dtype: 'f64', run: refBackend.run.bind(refBackend) };

function toF64(m: Model): Model {
  return Model.fromWeights(m.config, m.weights(), ref64);
}

/** Central-difference check of d loss / d param on `count` random entries of every parameter.
 *  Tolerance: |fd − g| ≤ 1e-5·(|fd| + |g|) + 1e-9·|L|/h (the second term is float64 round-off of the loss). */
function gradCheck(m: Model, lossFn: () => Var, count: number, seed: number): number {
  m.zeroGrad();
  const L = lossFn();
  const loss0 = Math.abs(L.value.data[0]!);
  backward(m.be, L);
  const rng = mulberry32(seed);
  let worst = 0;
  for (const [name, p] of m.params) {
    const g = p.grad;
    assert.ok(g, `no gradient for ${name}`);
    for (let c = 0; c < count; c++) {
      const i = Math.floor(rng() * p.value.size);
      const x0 = p.value.data[i]!;
      const h = 1e-5 * Math.max(1, Math.abs(x0));
      p.value.data[i] = x0 + h;
      const lp = lossFn().value.data[0]!;
      p.value.data[i] = x0 - h;
      const lm = lossFn().value.data[0]!;
      p.value.data[i] = x0;
      const fd = (lp - lm) / (2 * h);
      const diff = Math.abs(fd - g.data[i]!);
      const tol = 1e-5 * (Math.abs(fd) + Math.abs(g.data[i]!)) + (1e-9 * loss0) / h;
      worst = Math.max(worst, diff / tol);
      assert.ok(diff <= tol, `${name}[${i}]: autograd ${g.data[i]} vs finite difference ${fd}`);
    }
  }
  return worst;
}

function ids(V: number, n: number, seed: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

for (const scale of [1, 8]) {
  test(`whole-model gradients match finite differences: GQA with CE and KL (logit scale ×${scale})`, () => {
    const m = toF64(randomLlama(21, true));
    const head = m.p('lm_head.weight').value;
    for (let i = 0; i < head.size; i++) head.data[i]! *= scale;
    const x = ids(m.config.vocabSize, 2 * 9, 1);
    const targets = ids(m.config.vocabSize, 2 * 9, 2);
    targets[3] = -1;
    const teacher = Tensor.rand([18, m.config.vocabSize], mulberry32(3), -3 * scale, 3 * scale, 'f64');
    const F = m.F;
    gradCheck(m, () => F.add(F.sum(F.crossEntropy(forward(m, x, 2, 9), targets)), F.sum(F.klDiv(forward(m, x, 2, 9), teacher, 2))), 3, 4);
  });
}

test('whole-model gradients match finite differences: converted hybrid MLA student (latent norm, low-rank q)', () => {
  const t2 = randomLlama(23, false);
  const r2 = convert(t2, null, {
    plan: { kind: 'rank', rank: 10 }, ropeDim: 4, ropeMethod: 'transmla', basis: 'activation', qRank: 16, latentNorm: true, nopeInit: 'mean-rotation',
    keepLayers: [1], calib: { samples: 2, length: 24, seed: 1 },
  });
  const m = Model.fromWeights(r2.config, r2.weights, ref64);
  const x = ids(m.config.vocabSize, 11, 5);
  const teacherLogits = Tensor.rand([11, m.config.vocabSize], mulberry32(6), -2, 2, 'f64');
  gradCheck(m, () => m.F.sum(m.F.klDiv(forward(m, x, 1, 11), teacherLogits, 1)), 3, 7);
});

// Calibration statistics (src/convert/calibrate.ts): the one-pass path (statistics taken from the sampling decode
// itself) equals sampling first and then a prefill over the finished samples, and the prefill path's moments equal a
// direct float64 sum over the attention inputs. Tolerance 1e-5 on every backend: activations are f32 on ref as well
// (the decode and the prefill round them differently, and XᵀX is an f32 product).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relError } from '../src/tensor/tensor.js';
import { noGrad } from '../src/autograd/var.js';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { forward } from '../src/model/forward.js';
import { sampleSequences } from '../src/model/generate.js';
import { CALIB_SAMPLE_BATCH, calibrate, calibrationProgress, collectStats, type LayerStats } from '../src/convert/calibrate.js';
import { randomLlama } from './models.js';

function assertClose(got: LayerStats[], want: LayerStats[], tol: number, what: string): void {
  assert.equal(got.length, want.length);
  got.forEach((g, l) => {
    const w = want[l]!;
    assert.equal(g.n, w.n, `${what} layer ${l}: token count`);
    assert.ok(relError(g.mean, w.mean) <= tol, `${what} layer ${l}: mean ${relError(g.mean, w.mean)}`);
    assert.ok(relError(g.second, w.second) <= tol, `${what} layer ${l}: second moment ${relError(g.second, w.second)}`);
    assert.equal(g.maxDist, w.maxDist);
    assert.ok(relError(g.relDist!, w.relDist!) <= tol, `${what} layer ${l}: distances ${relError(g.relDist!, w.relDist!)}`);
  });
}

for (const name of availableBackends()) {
  const tol = 1e-5;
  test(`${name}: one-pass calibration (stats from the sampling decode) equals sampling then a prefill`, () => {
    const model = randomLlama(5, true, getBackend(name));
    // More samples than one sampling batch, so the key store is reset between batches.
    const samples = CALIB_SAMPLE_BATCH + 3;
    const opts = { samples, length: 9, seed: 11 };
    let ticks = 0;
    const got = calibrate(model, null, opts, { tick: (n = 1) => { ticks += n; }, end() {} });
    assert.equal(ticks, calibrationProgress(model.config.maxPositions, opts).total);
    const want = collectStats(model, sampleSequences(model, samples, 9, 11, CALIB_SAMPLE_BATCH));
    assertClose(got, want, tol, name);
  });

  test(`${name}: prefill statistics over windows of unequal length equal a direct float64 sum`, () => {
    const model = randomLlama(6, false, getBackend(name));
    const seqs = [[1, 5, 9, 3, 7], [1, 4], [2, 8, 8, 6, 5], [1, 9, 9, 9, 9, 2, 3]];
    const got = collectStats(model, seqs);
    const C = model.config.hiddenSize;
    const L = model.config.numLayers;
    const sum = Array.from({ length: L }, () => new Float64Array(C));
    const second = Array.from({ length: L }, () => new Float64Array(C * C));
    let n = 0;
    noGrad(() => {
      for (const s of seqs) {
        forward(model, Int32Array.from(s), 1, s.length, {
          onAttentionInput: (l, xv) => {
            const x = xv.value.data;
            for (let r = 0; r < s.length; r++) {
              for (let i = 0; i < C; i++) {
                sum[l]![i]! += x[r * C + i]!;
                for (let j = 0; j < C; j++) second[l]![i * C + j]! += x[r * C + i]! * x[r * C + j]!;
              }
            }
          },
        });
        n += s.length;
      }
    });
    got.forEach((st, l) => {
      assert.equal(st.n, n);
      assert.ok(relError(st.mean, sum[l]!.map((v) => v / n)) <= tol, `layer ${l} mean`);
      assert.ok(relError(st.second, second[l]!.map((v) => v / n)) <= tol, `layer ${l} second moment`);
      // Every query's probabilities sum to 1, so each head's distance row sums to 1 after the division by n.
      const H = model.config.numHeads;
      const M = st.maxDist!;
      assert.equal(M, 7);
      for (let h = 0; h < H; h++) {
        let mass = 0;
        for (let d = 0; d < M; d++) mass += st.relDist![h * M + d]!;
        assert.ok(Math.abs(mass - 1) <= tol, `layer ${l} head ${h}: mass ${mass}`);
      }
    });
  });
}

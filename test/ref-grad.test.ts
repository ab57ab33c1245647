// Finite-difference checks of every backward rule of the ref backend (STYLE.md item 7).
// Each check builds a scalar L = ⟨w, forward(x)⟩ with a random weight w, so ∂L/∂x is the backward applied to
// dy = w, and compares it with central differences (L(x + h·e_i) − L(x − h·e_i))/(2h), h = 1e-5, in float64
// (f64 tensors). Tolerance: relative error ‖analytic − numeric‖/‖numeric‖ ≤ 1e-6 (central differences are
// O(h²) ≈ 1e-10 accurate here, rounding adds ≈ 1e-16/h ≈ 1e-11). Linear maps (rope, matmul, sumTo, embedding)
// are checked as adjoint identities instead, to 1e-12. Extreme input ranges (logits ×100, scores ×30) are
// checked for finiteness and with the same finite differences.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend } from '../src/backends/ref/index.js';
import type { OpInputs, OpName, OpOutputs, OpParams } from '../src/tensor/ops.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { relError, Tensor } from '../src/tensor/tensor.js';

const FD_TOL = 1e-6;
const ADJ_TOL = 1e-12;
const H = 1e-5;

function run<O extends OpName>(op: O, inputs: OpInputs<O>, params: OpParams<O>): OpOutputs<O> {
  return refBackend.run(op, inputs, params);
}

function rand(shape: readonly number[], seed: number, lo = -1, hi = 1): Tensor {
  return Tensor.rand(shape, mulberry32(seed), lo, hi, 'f64');
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Central differences of loss() with respect to every element of x (perturbed in place, then restored). */
function numGrad(x: Tensor, loss: () => number): Float64Array {
  const g = new Float64Array(x.size);
  for (let i = 0; i < x.size; i++) {
    const x0 = x.data[i]!;
    x.data[i] = x0 + H;
    const lp = loss();
    x.data[i] = x0 - H;
    const lm = loss();
    x.data[i] = x0;
    g[i] = (lp - lm) / (2 * H);
  }
  return g;
}

function assertGrad(analytic: Tensor, x: Tensor, loss: () => number, what: string): void {
  assert.deepEqual(analytic.shape, x.shape, `${what}: gradient shape`);
  for (const v of analytic.data) assert.ok(Number.isFinite(v), `${what}: non-finite gradient`);
  const numeric = numGrad(x, loss);
  const e = relError(analytic.data, numeric);
  assert.ok(e <= FD_TOL, `${what}: relative error ${e.toExponential(2)} > ${FD_TOL}`);
}

function assertAdjoint(lhs: number, rhs: number, what: string): void {
  const e = Math.abs(lhs - rhs) / Math.max(Math.abs(rhs), 1e-300);
  assert.ok(e <= ADJ_TOL, `${what}: ${lhs} vs ${rhs} (relative ${e.toExponential(2)})`);
}

test('rmsnormBackward: dx and dw by finite differences', () => {
  for (const [N, C] of [[1, 1], [3, 7], [5, 13]] as const) {
    const x = rand([N, C], 10 * N + C, -2, 2);
    const w = rand([C], 11 * N + C);
    const dy = rand([N, C], 12 * N + C);
    const loss = (): number => dot(dy.data, run('rmsnorm', [x, w], { eps: 1e-5 })[0].data);
    const [, rstd] = run('rmsnorm', [x, w], { eps: 1e-5 });
    const [dx, dw] = run('rmsnormBackward', [dy, x, w, rstd], {});
    assertGrad(dx, x, loss, `rmsnorm dx ${N}x${C}`);
    assertGrad(dw, w, loss, `rmsnorm dw ${N}x${C}`);
  }
});

test('attentionBackward: dq, dk, dv by finite differences (causal, GQA, odd T, qOffset, extreme scores)', () => {
  const cases = [
    { B: 2, T: 5, H: 2, Hkv: 2, Dk: 4, Dv: 4, qOffset: 0, range: 1 },
    { B: 1, T: 7, H: 8, Hkv: 2, Dk: 5, Dv: 3, qOffset: 0, range: 1 },
    { B: 2, T: 3, H: 3, Hkv: 1, Dk: 3, Dv: 7, qOffset: 4, range: 1 },
    // Scores spread over ≈ ±100: the softmax saturates, the gradient must stay finite and right.
    { B: 1, T: 5, H: 4, Hkv: 2, Dk: 4, Dv: 3, qOffset: 0, range: 6 },
  ];
  let seed = 2000;
  for (const c of cases) {
    const S = c.qOffset + c.T;
    const q = rand([c.B, c.T, c.H, c.Dk], seed++, -c.range, c.range);
    const k = rand([c.B, S, c.Hkv, c.Dk], seed++, -c.range, c.range);
    const v = rand([c.B, S, c.Hkv, c.Dv], seed++);
    const dout = rand([c.B, c.T, c.H, c.Dv], seed++);
    const params = { scale: 1 / Math.sqrt(c.Dk), qOffset: c.qOffset, kvLen: S, vDim: c.Dv };
    const loss = (): number => dot(dout.data, run('attention', [q, k, v], params)[0].data);
    const [o, lse] = run('attention', [q, k, v], params);
    const [dq, dk, dv] = run('attentionBackward', [dout, q, k, v, o, lse], { scale: params.scale, qOffset: c.qOffset });
    const tag = JSON.stringify(c);
    assertGrad(dq, q, loss, `attention dq ${tag}`);
    assertGrad(dk, k, loss, `attention dk ${tag}`);
    assertGrad(dv, v, loss, `attention dv ${tag}`);
  }
});

test('swigluBackward by finite differences, including |g| up to 30', () => {
  for (const [shape, range] of [[[3, 7], 4], [[13], 30]] as [number[], number][]) {
    const g = rand(shape, 3000 + range, -range, range);
    const u = rand(shape, 3001 + range);
    const dy = rand(shape, 3002 + range);
    const loss = (): number => dot(dy.data, run('swiglu', [g, u], {})[0].data);
    const [dg, du] = run('swigluBackward', [dy, g, u], {});
    assertGrad(dg, g, loss, `swiglu dg range ${range}`);
    assertGrad(du, u, loss, `swiglu du range ${range}`);
  }
});

test('embeddingBackward accumulates repeated ids (finite differences)', () => {
  const table = rand([7, 3], 4000);
  const ids = Int32Array.from([1, 3, 1, 0, 1, 6]);
  const dy = rand([ids.length, 3], 4001);
  const loss = (): number => dot(dy.data, run('embedding', [table], { ids })[0].data);
  const [dt] = run('embeddingBackward', [dy], { ids, vocab: 7 });
  assertGrad(dt, table, loss, 'embedding dtable');
  // Row 1 got three contributions, rows never looked up stay exactly zero.
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(dt.get(1, c) - (dy.get(0, c) + dy.get(2, c) + dy.get(4, c))) < 1e-15);
    assert.equal(dt.get(2, c), 0);
  }
});

test('crossEntropyBackward by finite differences, ignored target, logits ×1 and ×100', () => {
  for (const scale of [1, 100]) {
    const [N, V] = [5, 13];
    const logits = rand([N, V], 5000 + scale, -3 * scale, 3 * scale);
    const targets = Int32Array.from([4, -1, 0, 12, 4]);
    const dloss = rand([N], 5001);
    const loss = (): number => dot(dloss.data, run('crossEntropy', [logits], { targets })[0].data);
    for (const x of run('crossEntropy', [logits], { targets })[0].data) {
      assert.ok(Number.isFinite(x), `finite loss ×${scale}`);
    }
    const [dl] = run('crossEntropyBackward', [logits, dloss], { targets });
    assertGrad(dl, logits, loss, `crossEntropy ×${scale}`);
    for (let v = 0; v < V; v++) assert.equal(dl.get(1, v), 0, 'ignored row has zero gradient');
  }
});

test('klDivBackward by finite differences at τ = 1 and 2, logits ×1 and ×100', () => {
  for (const scale of [1, 100]) {
    for (const temperature of [1, 2]) {
      const [N, V] = [3, 13];
      const s = rand([N, V], 6000 + scale, -3 * scale, 3 * scale);
      const t = rand([N, V], 6001 + scale, -3 * scale, 3 * scale);
      const dloss = rand([N], 6002);
      const loss = (): number => dot(dloss.data, run('klDiv', [s, t], { temperature })[0].data);
      const [kl] = run('klDiv', [s, t], { temperature });
      for (const x of kl.data) {
        assert.ok(Number.isFinite(x) && x >= -1e-12, `KL finite and ≥ 0 ×${scale} τ=${temperature}`);
      }
      const [ds] = run('klDivBackward', [s, t, dloss], { temperature });
      assertGrad(ds, s, loss, `klDiv ×${scale} τ=${temperature}`);
    }
  }
});

test('rope with inverse = true is the adjoint of rope: ⟨rope(x), y⟩ = ⟨x, ropeInverse(y)⟩', () => {
  const [B, T, Hh, D] = [2, 7, 3, 13];
  const invFreq = Float64Array.from([1, 0.3, 0.05, 0.001]);
  const positions = Int32Array.from([0, 1, 2, 3, 4, 5, 1000]);
  for (const pairing of ['half', 'adjacent'] as const) {
    for (const start of [0, 5]) {
      const x = rand([B, T, Hh, D], 7000 + start);
      const y = rand([B, T, Hh, D], 7001 + start);
      const [rx] = run('rope', [x], { start, invFreq, positions, pairing, inverse: false });
      const [ry] = run('rope', [y], { start, invFreq, positions, pairing, inverse: true });
      assertAdjoint(dot(rx.data, y.data), dot(x.data, ry.data), `rope ${pairing} start ${start}`);
    }
  }
});

test('matmul gradients are transposed matmuls', () => {
  const [Bt, M, K, N] = [3, 7, 5, 13];
  // Linear layer y = x·Wᵀ with a shared W (N, K): dx = dy·W, dW = dyᵀ·x over the folded batch.
  {
    const x = rand([Bt, M, K], 8000);
    const W = rand([N, K], 8001);
    const dy = rand([Bt, M, N], 8002);
    const loss = (): number => dot(dy.data, run('matmul', [x, W], { transA: false, transB: true })[0].data);
    const [dx] = run('matmul', [dy, W], { transA: false, transB: false });
    const [dW] = run('matmul', [dy.reshape([Bt * M, N]), x.reshape([Bt * M, K])], { transA: true, transB: false });
    assertGrad(dx, x, loss, 'linear dx');
    assertGrad(dW, W, loss, 'linear dW');
  }
  // Batched C = Aᵀ·B with a stored (…, K, M): dA = B·dCᵀ, dB = A·dC (A stored as a).
  {
    const a = rand([Bt, K, M], 8003);
    const b = rand([Bt, K, N], 8004);
    const dc = rand([Bt, M, N], 8005);
    const loss = (): number => dot(dc.data, run('matmul', [a, b], { transA: true, transB: false })[0].data);
    const [da] = run('matmul', [b, dc], { transA: false, transB: true });
    const [db] = run('matmul', [a, dc], { transA: false, transB: false });
    assertGrad(da, a, loss, 'batched transA da');
    assertGrad(db, b, loss, 'batched transA db');
  }
});

test('sumTo is the backward of broadcasting; mul and narrow/pad, permute adjoints', () => {
  for (const [big, small] of [[[2, 3, 7], [3, 1]], [[13, 7], [7]], [[3, 7], []]] as [number[], number[]][]) {
    const x = rand(small, 9000 + big.length);
    const w = rand(big, 9001);
    const zeros = Tensor.zeros(big, 'f64');
    const loss = (): number => dot(w.data, run('add', [x, zeros], {})[0].data);
    assertGrad(run('sumTo', [w], { shape: small })[0], x, loss, `sumTo [${big}] → [${small}]`);
  }
  // y = a ⊙ b with a broadcast: da = sumTo(dy ⊙ b, a.shape).
  const a = rand([1, 7], 9100);
  const b = rand([3, 7], 9101);
  const dy = rand([3, 7], 9102);
  const lossMul = (): number => dot(dy.data, run('mul', [a, b], {})[0].data);
  assertGrad(run('sumTo', [run('mul', [dy, b], {})[0]], { shape: [1, 7] })[0], a, lossMul, 'mul da');

  const x = rand([3, 5, 13], 9200);
  const y = rand([3, 5, 4], 9201);
  assertAdjoint(
    dot(run('narrow', [x], { start: 6, len: 4 })[0].data, y.data),
    dot(x.data, run('pad', [y], { start: 6, total: 13 })[0].data),
    'narrow/pad',
  );
  const perm = [2, 0, 1];
  const inv = [1, 2, 0];
  const z = rand([13, 3, 5], 9202);
  assertAdjoint(
    dot(run('permute', [x], { perm })[0].data, z.data),
    dot(x.data, run('permute', [z], { perm: inv })[0].data),
    'permute',
  );
});

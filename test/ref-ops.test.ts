// Forward ops of the ref backend against independent naive computations and hand-derived values.
// Inputs are seeded random (mulberry32) in float64 over several shapes including odd sizes (1, 3, 7, 13).
// Tolerance: relative error ‖a−b‖/‖b‖ ≤ 1e-12 against the naive float64 computation (both sides accumulate
// in float64, only the summation order differs); hand-derived values ≤ 1e-14 absolute.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend, refKernels } from '../src/backends/ref/index.js';
import { OP_NAMES } from '../src/tensor/ops.js';
import type { OpInputs, OpName, OpOutputs, OpParams } from '../src/tensor/ops.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { relError, sizeOf, Tensor } from '../src/tensor/tensor.js';
import type { DType } from '../src/tensor/tensor.js';

const TOL = 1e-12;

function run<O extends OpName>(op: O, inputs: OpInputs<O>, params: OpParams<O>): OpOutputs<O> {
  return refBackend.run(op, inputs, params);
}

function rand(shape: readonly number[], seed: number, lo = -1, hi = 1, dtype: DType = 'f64'): Tensor {
  return Tensor.rand(shape, mulberry32(seed), lo, hi, dtype);
}

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = TOL): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) assert.ok(Number.isFinite(actual[i]!), `${what}: non-finite at ${i}`);
  const e = relError(actual, expected);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

/** Multi-index of flat offset i in shape. */
function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let ax = shape.length - 1; ax >= 0; ax--) {
    idx[ax] = i % shape[ax]!;
    i = Math.floor(i / shape[ax]!);
  }
  return idx;
}

/** Flat offset of a multi-index aligned to the trailing axes of shape, reading index 0 on axes of size 1. */
function ravelBroadcast(idx: readonly number[], shape: readonly number[]): number {
  const lead = idx.length - shape.length;
  let off = 0;
  for (let ax = 0; ax < shape.length; ax++) off = off * shape[ax]! + (shape[ax] === 1 ? 0 : idx[lead + ax]!);
  return off;
}

test('the kernel table covers exactly the op list', () => {
  assert.deepEqual(Object.keys(refKernels).sort(), [...OP_NAMES].sort());
  for (const op of OP_NAMES) {
    assert.ok(refBackend.supports(op, 'f32') && refBackend.supports(op, 'f64'), op);
  }
  assert.equal(refBackend.name, 'ref');
  assert.equal(refBackend.threads, 1);
});

test('matmul matches a naive triple loop (batched, shared b, transposes, odd sizes)', () => {
  let seed = 1;
  for (const [M, K, N] of [[1, 1, 1], [3, 7, 13], [13, 1, 7], [7, 13, 3]] as const) {
    for (const batch of [[], [3], [2, 1]] as number[][]) {
      for (const shared of batch.length === 0 ? [true] : [true, false]) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const P = sizeOf(batch);
            // Logical A (P, M, K) and B (P or 1, K, N), then stored as the op reads them.
            const A = rand([P, M, K], seed++);
            const Bn = shared ? 1 : P;
            const Bl = rand([Bn, K, N], seed++);
            const aStored = Tensor.zeros([...batch, ...(transA ? [K, M] : [M, K])], 'f64');
            const bStored = Tensor.zeros([...(shared ? [] : batch), ...(transB ? [N, K] : [K, N])], 'f64');
            for (let p = 0; p < P; p++) {
              for (let i = 0; i < M; i++) {
                for (let k = 0; k < K; k++) {
                  aStored.data[p * M * K + (transA ? k * M + i : i * K + k)] = A.get(p, i, k);
                }
              }
            }
            for (let p = 0; p < Bn; p++) {
              for (let k = 0; k < K; k++) {
                for (let j = 0; j < N; j++) {
                  bStored.data[p * K * N + (transB ? j * K + k : k * N + j)] = Bl.get(p, k, j);
                }
              }
            }
            const want = new Float64Array(P * M * N);
            for (let p = 0; p < P; p++) {
              for (let i = 0; i < M; i++) {
                for (let j = 0; j < N; j++) {
                  let s = 0;
                  for (let k = 0; k < K; k++) s += A.get(p, i, k) * Bl.get(shared ? 0 : p, k, j);
                  want[(p * M + i) * N + j] = s;
                }
              }
            }
            const [c] = run('matmul', [aStored, bStored], { transA, transB });
            assert.deepEqual(c.shape, [...batch, M, N]);
            close(c.data, want, `matmul M${M} K${K} N${N} batch[${batch}] shared=${shared} tA=${transA} tB=${transB}`);
          }
        }
      }
    }
  }
});

test('add, sub, mul broadcast like numpy', () => {
  const pairs: [number[], number[]][] = [
    [[3, 7], [3, 7]],
    [[3, 1, 5], [4, 5]],
    [[7], [13, 7]],
    [[1], [3, 7]],
    [[2, 1, 3], [1, 13, 1]],
    [[], [3]],
  ];
  let seed = 100;
  for (const [sa, sb] of pairs) {
    const a = rand(sa, seed++);
    const b = rand(sb, seed++);
    const ops = {
      add: (x: number, y: number) => x + y,
      sub: (x: number, y: number) => x - y,
      mul: (x: number, y: number) => x * y,
    };
    for (const [op, f] of Object.entries(ops) as ['add' | 'sub' | 'mul', (x: number, y: number) => number][]) {
      const [y] = run(op, [a, b], {});
      const rank = Math.max(sa.length, sb.length);
      const shape = Array.from({ length: rank }, (_, i) =>
        Math.max(sa[sa.length - rank + i] ?? 1, sb[sb.length - rank + i] ?? 1),
      );
      assert.deepEqual(y.shape, shape, `${op} shape`);
      const want = new Float64Array(sizeOf(shape));
      for (let i = 0; i < want.length; i++) {
        const idx = unravel(i, shape);
        want[i] = f(a.data[ravelBroadcast(idx, sa)]!, b.data[ravelBroadcast(idx, sb)]!);
      }
      close(y.data, want, `${op} [${sa}] [${sb}]`);
    }
  }
  assert.throws(
    () => run('add', [rand([3, 2], 1), rand([4, 2], 2)], {}),
    /ref\.add: cannot broadcast a \[3, 2\] with b \[4, 2\]/,
  );
});

test('affine, sumSquares by hand', () => {
  const x = Tensor.from([2, 2], [1, -2, 3, 0.5], 'f64');
  assert.deepEqual([...run('affine', [x], { a: 2, b: -1 })[0].data], [1, -5, 5, 0]);
  const [s] = run('sumSquares', [x], {});
  assert.deepEqual(s.shape, []);
  assert.equal(s.data[0], 1 + 4 + 9 + 0.25);
});

test('sumTo sums exactly the broadcast axes', () => {
  let seed = 200;
  for (const [sx, st] of [
    [[2, 3, 4], [3, 1]],
    [[2, 3, 4], [4]],
    [[2, 3, 4], []],
    [[2, 3, 4], [2, 3, 4]],
    [[7, 13], [1, 13]],
    [[7, 13], [7, 1]],
  ] as [number[], number[]][]) {
    const x = rand(sx, seed++);
    const [y] = run('sumTo', [x], { shape: st });
    assert.deepEqual(y.shape, st);
    const want = new Float64Array(sizeOf(st));
    for (let i = 0; i < x.size; i++) {
      const j = ravelBroadcast(unravel(i, sx), st);
      want[j] = want[j]! + x.data[i]!;
    }
    close(y.data, want, `sumTo [${sx}] → [${st}]`);
  }
  assert.throws(() => run('sumTo', [rand([2, 3], 1)], { shape: [2] }), /ref\.sumTo: .*axis 0 of the target/);
});

test('permute, narrow, pad, concat, writeAt', () => {
  const x = rand([2, 3, 5, 7], 300);
  for (const perm of [[0, 2, 1, 3], [3, 0, 2, 1], [0, 1, 2, 3]]) {
    const [y] = run('permute', [x], { perm });
    assert.deepEqual(y.shape, perm.map((p) => x.shape[p]));
    for (let i = 0; i < y.size; i++) {
      const idx = unravel(i, y.shape);
      const src = new Array<number>(4);
      perm.forEach((p, a) => (src[p] = idx[a]!));
      assert.equal(y.data[i], x.get(...src));
    }
  }
  assert.throws(
    () => run('permute', [x], { perm: [0, 1, 1, 3] }),
    /ref\.permute: perm \[0, 1, 1, 3\] is not a permutation/,
  );

  const [n] = run('narrow', [x], { start: 2, len: 3 });
  assert.deepEqual(n.shape, [2, 3, 5, 3]);
  for (let i = 0; i < n.size; i++) {
    const idx = unravel(i, n.shape);
    assert.equal(n.data[i], x.get(idx[0]!, idx[1]!, idx[2]!, idx[3]! + 2));
  }
  const [p] = run('pad', [n], { start: 2, total: 9 });
  assert.deepEqual(p.shape, [2, 3, 5, 9]);
  for (let i = 0; i < p.size; i++) {
    const idx = unravel(i, p.shape);
    const c = idx[3]!;
    assert.equal(p.data[i], c >= 2 && c < 5 ? x.get(idx[0]!, idx[1]!, idx[2]!, c) : 0);
  }
  const b = rand([2, 3, 5, 1], 301);
  const [cat] = run('concat', [x, b], {});
  assert.deepEqual(cat.shape, [2, 3, 5, 8]);
  const [back1] = run('narrow', [cat], { start: 0, len: 7 });
  const [back2] = run('narrow', [cat], { start: 7, len: 1 });
  assert.deepEqual([...back1.data], [...x.data]);
  assert.deepEqual([...back2.data], [...b.data]);
  assert.throws(() => run('narrow', [x], { start: 5, len: 3 }), /ref\.narrow: columns \[5, 8\) do not fit/);
  assert.throws(() => run('concat', [x, rand([2, 3, 4, 1], 1)], {}), /ref\.concat: a and b must agree/);

  const dst = Tensor.fill([4, 3], -1, 'f64');
  const src = Tensor.from([2, 3], [1, 2, 3, 4, 5, 6], 'f64');
  assert.deepEqual(run('writeAt', [dst, src], { offset: 3 }), []);
  assert.deepEqual([...dst.data], [-1, -1, -1, 1, 2, 3, 4, 5, 6, -1, -1, -1]);
  assert.throws(() => run('writeAt', [dst, src], { offset: 7 }), /ref\.writeAt: .*does not fit dst \[4, 3\]/);
});

test('rmsnorm by hand and against a naive loop', () => {
  const x = Tensor.from([1, 2], [3, 4], 'f64');
  const w = Tensor.from([2], [1, 2], 'f64');
  const [y, rstd] = run('rmsnorm', [x, w], { eps: 0 });
  const r = 1 / Math.sqrt(12.5);
  close(y.data, [3 * r, 8 * r], 'rmsnorm hand', 1e-15);
  close(rstd.data, [r], 'rstd hand', 1e-15);
  for (const [N, C] of [[1, 1], [3, 7], [13, 3]] as const) {
    const xs = rand([N, C], N * 100 + C, -3, 3);
    const ws = rand([C], N + C);
    const [ys, rs] = run('rmsnorm', [xs, ws], { eps: 1e-5 });
    const want = new Float64Array(N * C);
    const wantR = new Float64Array(N);
    for (let n = 0; n < N; n++) {
      let ms = 0;
      for (let c = 0; c < C; c++) ms += xs.get(n, c) ** 2 / C;
      wantR[n] = 1 / Math.sqrt(ms + 1e-5);
      for (let c = 0; c < C; c++) want[n * C + c] = (xs.get(n, c) * ws.data[c]!) / Math.sqrt(ms + 1e-5);
    }
    close(ys.data, want, `rmsnorm ${N}x${C}`);
    close(rs.data, wantR, `rstd ${N}x${C}`);
  }
  // f32 in → f32 out (stats included).
  const [y32, r32] = run('rmsnorm', [rand([3, 7], 5, -1, 1, 'f32'), rand([7], 6, -1, 1, 'f32')], { eps: 1e-5 });
  assert.equal(y32.dtype, 'f32');
  assert.equal(r32.dtype, 'f32');
  assert.throws(
    () => run('rmsnorm', [rand([3, 7], 1), rand([6], 2)], { eps: 1e-5 }),
    /ref\.rmsnorm: w \(C\) for x \[3, 7\] must have shape \[7\], got \[6\]/,
  );
  assert.throws(
    () => run('rmsnorm', [rand([3, 7], 1), rand([7], 2, -1, 1, 'f32')], { eps: 1e-5 }),
    /ref\.rmsnorm: input 1 is f32 but input 0 is f64/,
  );
});

test('rope at known angles, both pairings', () => {
  // One head of 6 columns; rotated slice [1, 5) holds P = 2 pairs with θ = pos·(π/2) and pos·π.
  const x = Tensor.from([1, 3, 1, 6], [9, 1, 2, 3, 4, 8, 9, 1, 2, 3, 4, 8, 9, 1, 2, 3, 4, 8], 'f64');
  const invFreq = Float64Array.from([Math.PI / 2, Math.PI]);
  const positions = Int32Array.from([0, 1, 2]);
  const expect = {
    // half pairs (1,3) and (2,4): at pos 1 (1,3) → (−3,1) by π/2, (2,4) → (−2,−4) by π;
    // at pos 2 they turn by π and 2π.
    half: [9, 1, 2, 3, 4, 8, 9, -3, -2, 1, -4, 8, 9, -1, 2, -3, 4, 8],
    // adjacent pairs (1,2) and (3,4): at pos 1 (1,2) → (−2,1), (3,4) → (−3,−4);
    // at pos 2 (−1,−2) and (3,4).
    adjacent: [9, 1, 2, 3, 4, 8, 9, -2, 1, -3, -4, 8, 9, -1, -2, 3, 4, 8],
  };
  for (const pairing of ['half', 'adjacent'] as const) {
    const [y] = run('rope', [x], { start: 1, invFreq, positions, pairing, inverse: false });
    const e = expect[pairing];
    for (let i = 0; i < e.length; i++) {
      assert.ok(Math.abs(y.data[i]! - e[i]!) < 1e-14, `${pairing} [${i}] ${y.data[i]} vs ${e[i]}`);
    }
    const [back] = run('rope', [y], { start: 1, invFreq, positions, pairing, inverse: true });
    close(back.data, x.data, `rope ${pairing} inverse∘forward`, 1e-15);
  }
});

test('rope: inverse∘forward = identity, norms kept, half = adjacent after de-interleaving', () => {
  const [B, T, H, D] = [2, 7, 3, 13];
  const P = 5;
  const start = 2;
  const x = rand([B, T, H, D], 400, -2, 2);
  const invFreq = Float64Array.from({ length: P }, (_, j) => Math.pow(10000, (-2 * j) / (2 * P)));
  const positions = Int32Array.from({ length: T }, (_, t) => 3 + 5 * t);
  const [yh] = run('rope', [x], { start, invFreq, positions, pairing: 'half', inverse: false });
  const [ya] = run('rope', [x], { start, invFreq, positions, pairing: 'adjacent', inverse: false });
  for (const [pairing, y] of [['half', yh], ['adjacent', ya]] as const) {
    const [back] = run('rope', [y], { start, invFreq, positions, pairing, inverse: true });
    close(back.data, x.data, `rope ${pairing} identity`);
    const [n2] = run('sumSquares', [y], {});
    const [m2] = run('sumSquares', [x], {});
    close(n2.data, m2.data, `rope ${pairing} keeps the norm`);
  }
  // De-interleaving the slice (2j, 2j+1) → (j, P+j) turns the adjacent layout into the half layout.
  const deinter = (t: Tensor): Tensor => {
    const out = t.clone();
    for (let r = 0; r < B * T * H; r++) {
      for (let j = 0; j < P; j++) {
        out.data[r * D + start + j] = t.data[r * D + start + 2 * j]!;
        out.data[r * D + start + P + j] = t.data[r * D + start + 2 * j + 1]!;
      }
    }
    return out;
  };
  const [yFromDe] = run('rope', [deinter(x)], { start, invFreq, positions, pairing: 'half', inverse: false });
  close(yFromDe.data, deinter(ya).data, 'half(deinterleave(x)) = deinterleave(adjacent(x))');
  assert.throws(
    () => run('rope', [x], { start: 4, invFreq, positions, pairing: 'half', inverse: false }),
    /ref\.rope: rotated columns \[4, 14\) \(5 pairs\) do not fit head dim 13/,
  );
});

/** Explicit softmax(Q·Kᵀ·scale + causal mask)·V per (b, h) with rows ≥ kvLen and columns ≥ vDim excluded. */
function naiveAttention(
  q: Tensor, k: Tensor, v: Tensor, scale: number, qOffset: number, kvLen: number, vDim: number,
): { o: Float64Array; lse: Float64Array } {
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const Hkv = k.dim(2);
  const o = new Float64Array(B * T * H * vDim);
  const lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor((h * Hkv) / H);
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(kvLen);
        for (let j = 0; j < kvLen; j++) {
          let d = 0;
          for (let c = 0; c < Dk; c++) d += q.get(b, t, h, c) * k.get(b, j, g, c);
          s[j] = j <= qOffset + t ? d * scale : -Infinity;
        }
        const e = Array.from(s, Math.exp);
        const z = e.reduce((x, y) => x + y, 0);
        lse[(b * H + h) * T + t] = Math.log(z);
        for (let c = 0; c < vDim; c++) {
          let acc = 0;
          for (let j = 0; j < kvLen; j++) if (e[j]! > 0) acc += (e[j]! / z) * v.get(b, j, g, c);
          o[((b * T + t) * H + h) * vDim + c] = acc;
        }
      }
    }
  }
  return { o, lse };
}

test('attention matches explicit softmax(QKᵀ·scale + mask)·V: MHA, GQA, MQA, qOffset/kvLen/vDim', () => {
  const cases = [
    { B: 2, T: 5, H: 4, Hkv: 4, Dk: 8, S: 5, Dvs: 8, qOffset: 0, kvLen: 5, vDim: 8 },
    { B: 1, T: 7, H: 8, Hkv: 2, Dk: 3, S: 7, Dvs: 5, qOffset: 0, kvLen: 7, vDim: 5 },
    { B: 2, T: 3, H: 3, Hkv: 1, Dk: 7, S: 13, Dvs: 7, qOffset: 6, kvLen: 9, vDim: 5 },
    { B: 1, T: 1, H: 8, Hkv: 2, Dk: 13, S: 13, Dvs: 3, qOffset: 11, kvLen: 12, vDim: 3 },
    { B: 1, T: 1, H: 1, Hkv: 1, Dk: 1, S: 1, Dvs: 1, qOffset: 0, kvLen: 1, vDim: 1 },
  ];
  let seed = 500;
  for (const c of cases) {
    const q = rand([c.B, c.T, c.H, c.Dk], seed++, -2, 2);
    const k = rand([c.B, c.S, c.Hkv, c.Dk], seed++, -2, 2);
    const v = rand([c.B, c.S, c.Hkv, c.Dvs], seed++, -2, 2);
    // Rows past kvLen and columns past vDim must never be read: poison them.
    for (let i = 0; i < k.size; i++) if (Math.floor(i / (c.Hkv * c.Dk)) % c.S >= c.kvLen) k.data[i] = NaN;
    for (let i = 0; i < v.size; i++) {
      if (Math.floor(i / (c.Hkv * c.Dvs)) % c.S >= c.kvLen || i % c.Dvs >= c.vDim) v.data[i] = NaN;
    }
    const scale = 1 / Math.sqrt(c.Dk);
    const [o, lse] = run('attention', [q, k, v], { scale, qOffset: c.qOffset, kvLen: c.kvLen, vDim: c.vDim });
    assert.deepEqual(o.shape, [c.B, c.T, c.H, c.vDim]);
    assert.deepEqual(lse.shape, [c.B, c.H, c.T]);
    const want = naiveAttention(q, k, v, scale, c.qOffset, c.kvLen, c.vDim);
    close(o.data, want.o, `attention o ${JSON.stringify(c)}`);
    close(lse.data, want.lse, `attention lse ${JSON.stringify(c)}`);
  }
});

test('attention: decoding one query at a time equals the causal prefill', () => {
  const [B, T, H, Hkv, Dk, Dv] = [2, 7, 8, 2, 5, 3];
  const q = rand([B, T, H, Dk], 600);
  const k = rand([B, T, Hkv, Dk], 601);
  const v = rand([B, T, Hkv, Dv], 602);
  const [full] = run('attention', [q, k, v], { scale: 0.4, qOffset: 0, kvLen: T, vDim: Dv });
  for (let t = 0; t < T; t++) {
    // q (B, T, H, Dk) → (B, H, Dk, T) → column t → (B, 1, H, Dk).
    const qCols = run('permute', [q], { perm: [0, 2, 3, 1] })[0];
    const qt = run('permute', [run('narrow', [qCols], { start: t, len: 1 })[0]], { perm: [0, 3, 1, 2] })[0];
    const [ot] = run('attention', [qt, k, v], { scale: 0.4, qOffset: t, kvLen: t + 1, vDim: Dv });
    const row = run('narrow', [run('permute', [full], { perm: [0, 2, 3, 1] })[0]], { start: t, len: 1 })[0];
    close(run('permute', [ot], { perm: [0, 2, 3, 1] })[0].data, row.data, `decode step ${t}`);
  }
  assert.throws(
    () => run('attention', [q, k, v], { scale: 0.4, qOffset: 0, kvLen: T + 1, vDim: Dv }),
    /ref\.attention: q \[2, 7, 8, 5\], k \[2, 7, 2, 5\], v \[2, 7, 2, 3\]: kvLen 8 must be in \[1, S = 7\]/,
  );
});

test('swiglu against silu(g)·u, finite at ±1000', () => {
  const g = rand([3, 13], 700, -6, 6);
  const u = rand([3, 13], 701);
  const [y] = run('swiglu', [g, u], {});
  close(y.data, Array.from(g.data, (x, i) => (x / (1 + Math.exp(-x))) * u.data[i]!), 'swiglu');
  const [ye] = run('swiglu', [Tensor.from([2], [1000, -1000], 'f64'), Tensor.from([2], [1, 1], 'f64')], {});
  assert.deepEqual([...ye.data].map((x) => x + 0), [1000, 0]);
});

test('embedding gathers rows', () => {
  const table = rand([13, 7], 800);
  const ids = Int32Array.from([3, 0, 12, 3]);
  const [y] = run('embedding', [table], { ids });
  assert.deepEqual(y.shape, [4, 7]);
  for (let n = 0; n < 4; n++) for (let c = 0; c < 7; c++) assert.equal(y.get(n, c), table.get(ids[n]!, c));
  assert.throws(
    () => run('embedding', [table], { ids: Int32Array.from([13]) }),
    /ref\.embedding: ids\[0\] = 13 is outside \[0, 13\)/,
  );
});

/** log softmax of a row, naive (no shift: inputs here are small). */
function logSoftmax(row: number[]): number[] {
  const z = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
  return row.map((x) => x - z);
}

test('crossEntropy by hand, against naive, ignored rows', () => {
  const [l0] = run('crossEntropy', [Tensor.zeros([1, 4], 'f64')], { targets: Int32Array.from([2]) });
  close(l0.data, [Math.log(4)], 'uniform logits', 1e-15);
  const [N, V] = [7, 13];
  const logits = rand([N, V], 900, -4, 4);
  const targets = Int32Array.from([0, 12, -1, 5, 5, -1, 3]);
  const [loss] = run('crossEntropy', [logits], { targets });
  const want = Array.from({ length: N }, (_, n) => {
    const t = targets[n]!;
    return t < 0 ? 0 : -logSoftmax(Array.from(logits.data.subarray(n * V, (n + 1) * V)))[t]!;
  });
  close(loss.data, want, 'crossEntropy');
  assert.throws(
    () => run('crossEntropy', [logits], { targets: Int32Array.from([0, 13, 0, 0, 0, 0, 0]) }),
    /ref\.crossEntropy: targets\[1\] = 13 is ≥ V = 13/,
  );
});

test('klDiv against naive Σ p_t·log(p_t/p_s) at τ = 1 and 2; zero for equal inputs', () => {
  const [N, V] = [3, 13];
  const s = rand([N, V], 1000, -3, 3);
  const t = rand([N, V], 1001, -3, 3);
  for (const tau of [1, 2]) {
    const [kl] = run('klDiv', [s, t], { temperature: tau });
    const want = Array.from({ length: N }, (_, n) => {
      const ls = logSoftmax(Array.from(s.data.subarray(n * V, (n + 1) * V), (x) => x / tau));
      const lt = logSoftmax(Array.from(t.data.subarray(n * V, (n + 1) * V), (x) => x / tau));
      return lt.reduce((a, l, v) => a + Math.exp(l) * (l - ls[v]!), 0);
    });
    close(kl.data, want, `klDiv τ=${tau}`);
    const [k0] = run('klDiv', [s, s], { temperature: tau });
    for (const x of k0.data) assert.ok(Math.abs(x) < 1e-15);
  }
});

test('adamw matches a hand-computed step (torch.optim.AdamW)', () => {
  // lr 0.1, β (0.9, 0.999), eps 1e-8, wd 0.01, step 2 from m = 0.5, v = 0.25:
  //   p' = 1·(1 − 0.1·0.01) = 0.999; m = 0.9·0.5 + 0.1·2 = 0.65; v = 0.999·0.25 + 0.001·4 = 0.25375;
  //   m̂ = 0.65/(1 − 0.81) = 3.42105263157895; v̂ = 0.25375/(1 − 0.998001) = 126.938469234619;
  //   p = 0.999 − 0.1·3.42105263157895/(√126.938469234619 + 1e-8) = 0.9686357102575467 (computed in Python).
  const p = Tensor.from([2], [1, -3], 'f64');
  const g = Tensor.from([2], [2, 0], 'f64');
  const m = Tensor.from([2], [0.5, 0], 'f64');
  const v = Tensor.from([2], [0.25, 0], 'f64');
  const hyper = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 2 };
  assert.deepEqual(run('adamw', [p, g, m, v], hyper), []);
  assert.ok(Math.abs(m.data[0]! - 0.65) < 1e-15);
  assert.ok(Math.abs(v.data[0]! - 0.25375) < 1e-15);
  const expected = 0.999 - (0.1 * (0.65 / 0.19)) / (Math.sqrt(0.25375 / (1 - 0.999 ** 2)) + 1e-8);
  assert.ok(Math.abs(expected - 0.9686357102575467) < 1e-12, `hand value ${expected}`);
  assert.ok(Math.abs(p.data[0]! - 0.9686357102575467) < 1e-12, `p ${p.data[0]}`);
  // Zero gradient and zero moments: only the decay moves p.
  assert.ok(Math.abs(p.data[1]! - -3 * 0.999) < 1e-15);
  assert.throws(
    () => run('adamw', [p, g, m, v], { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 0 }),
    /ref\.adamw: step counts from 1/,
  );
});

test('run() rejects malformed calls with the op name and shapes', () => {
  assert.throws(
    () => run('matmul', [rand([2, 3, 4], 1), rand([5, 6], 2)], { transA: false, transB: false }),
    /ref\.matmul: a \[2, 3, 4\], b \[5, 6\] \(transA=false, transB=false\): contracted sizes 4 and 5 differ/,
  );
  assert.throws(
    () => run('matmul', [rand([2, 3, 4], 1), rand([3, 4, 6], 2)], { transA: false, transB: false }),
    /ref\.matmul: .*b must have the batch axes of a or none/,
  );
  assert.throws(
    () => run('swiglu', [rand([3], 1)] as unknown as OpInputs<'swiglu'>, {}),
    /ref\.swiglu: expects 2 input tensors, got 1/,
  );
});

test('attentionDistance equals the attention probabilities (read through one-hot values) binned by distance', () => {
  // v[b, j, g, :] = e_j makes attention's output row o[b, t, h, :] the probability row p[b, h, t, :].
  for (const [B, T, S, H, Hkv, D, qOffset] of [[2, 5, 5, 4, 2, 3, 0], [1, 3, 11, 3, 1, 8, 6], [3, 1, 7, 2, 2, 4, 6]] as const) {
    const q = rand([B, T, H, D], 31 + T);
    const k = rand([B, S, Hkv, D], 37 + S);
    const v = Tensor.zeros([B, S, Hkv, S], 'f64');
    for (let b = 0; b < B; b++) for (let j = 0; j < S; j++) for (let g = 0; g < Hkv; g++) v.data[((b * S + j) * Hkv + g) * S + j] = 1;
    const [o] = run('attention', [q, k, v], { scale: 0.7, qOffset, kvLen: S, vDim: S });
    const want = new Float64Array(H * S);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
      for (let j = 0; j <= qOffset + t; j++) want[h * S + qOffset + t - j]! += o.data[((b * T + t) * H + h) * S + j]!;
    }
    const [dist] = run('attentionDistance', [q, k], { scale: 0.7, qOffset });
    assert.deepEqual(dist.shape, [H, S]);
    assert.ok(relError(dist.data, want) < TOL, `B=${B} T=${T} S=${S}: ${relError(dist.data, want)}`);
    // Each query's probabilities sum to 1: every head's row holds B·T of mass.
    for (let h = 0; h < H; h++) {
      let mass = 0;
      for (let d = 0; d < S; d++) mass += dist.data[h * S + d]!;
      assert.ok(Math.abs(mass - B * T) < 1e-12, `head ${h}: mass ${mass}, want ${B * T}`);
    }
  }
});

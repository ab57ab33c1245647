// Backend conformance (STYLE.md item 6, like ggml's test-backend-ops): one table of cases, every op in OP_NAMES,
// run on every available non-ref backend against the ref backend on the same seeded random f32 inputs. The ref runs on
// float64 copies of those inputs (exact oracle); a case passes when ‖got − want‖/‖want‖ ≤ tol for every output (for
// in-place ops: every input after the call). Default tol 1e-5 (DESIGN.md numerics); a looser one says why.
// On failure it prints op, case, params, max difference and the first bad index.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { mulberry32, type Rng } from '../src/tensor/rng.js';
import { OP_NAMES } from '../src/tensor/ops.js';
import type { OpInputs, OpName, OpOutputs, OpParams } from '../src/tensor/ops.js';
import type { Backend } from '../src/tensor/backend.js';
import { refBackend } from '../src/backends/ref/index.js';
import { availableBackends, backendStatus, getBackend } from '../src/backends/index.js';
import { loadCpuBackend, type CpuBackend } from '../src/backends/cpu/index.js';
import { tsLinalg } from '../src/linalg/ts-linalg.js';
import { DTYPES, bytesPerElement } from '../src/tensor/storage.js';

const DEFAULT_TOL = 1e-5;

interface In {
  shape: number[];
  /** Uniform range of the values; [-1, 1) when absent. */
  range?: [number, number];
}

interface Case<O extends OpName> {
  label: string;
  inputs: In[];
  params: OpParams<O> | ((rng: Rng) => OpParams<O>);
  /** Replaces the random inputs where they must be consistent (the attention forward outputs the backward reads). */
  build?: (inputs: Tensor[], params: OpParams<O>) => Tensor[];
  tol?: number;
  /** Large enough to run threaded: also run at 1 and 3 threads (a partition the default count does not give). */
  big?: boolean;
}

type Table = { [O in OpName]: Case<O>[] };

const NONE = {} as Record<string, never>;
const ints = (rng: Rng, n: number, lo: number, hi: number): Int32Array =>
  Int32Array.from({ length: n }, () => lo + Math.floor(rng() * (hi - lo)));

/** a (…, M, K) / (…, K, M) and b (…, K, N) / (…, N, K) for the given trans flags. */
function mm(label: string, batchA: number[], batchB: number[], M: number, K: number, N: number, tA: boolean, tB: boolean, big = false): Case<'matmul'> {
  return {
    label: `${label} M=${M} K=${K} N=${N}${tA ? ' transA' : ''}${tB ? ' transB' : ''}`,
    inputs: [{ shape: [...batchA, ...(tA ? [K, M] : [M, K])] }, { shape: [...batchB, ...(tB ? [N, K] : [K, N])] }],
    params: { transA: tA, transB: tB },
    big,
  };
}

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

function ropeParams(rng: Rng, T: number, start: number, P: number, pairing: 'half' | 'adjacent', inverse: boolean): OpParams<'rope'> {
  const invFreq = Float64Array.from({ length: P }, (_, i) => Math.pow(10000, -(2 * i) / (2 * P)));
  return { start, invFreq, positions: ints(rng, T, 0, 4096), pairing, inverse };
}

function attn(label: string, B: number, T: number, S: number, H: number, Hkv: number, Dk: number, Dvs: number, p: OpParams<'attention'>, range?: [number, number], big = false): Case<'attention'> {
  return {
    label,
    inputs: [{ shape: [B, T, H, Dk], range }, { shape: [B, S, Hkv, Dk], range }, { shape: [B, S, Hkv, Dvs] }],
    params: p,
    big,
  };
}

/** Backward cases feed o and lse from the f32 ref forward of the same q, k, v (kvLen = S, vDim = Dv). */
function attnBack(label: string, B: number, T: number, S: number, H: number, Hkv: number, Dk: number, Dv: number, scale: number, qOffset: number, big = false): Case<'attentionBackward'> {
  return {
    label,
    inputs: [
      { shape: [B, T, H, Dv] }, { shape: [B, T, H, Dk] }, { shape: [B, S, Hkv, Dk] }, { shape: [B, S, Hkv, Dv] },
      { shape: [B, T, H, Dv] }, { shape: [B, H, T] },
    ],
    params: { scale, qOffset },
    build: ([dout, q, k, v]) => {
      const [o, lse] = refBackend.run('attention', [q!, k!, v!], { scale, qOffset, kvLen: S, vDim: Dv });
      return [dout!, q!, k!, v!, o, lse];
    },
    big,
  };
}

const CASES: Table = {
  matmul: [
    ...TRANS.map(([a, b]) => mm('small', [], [], 3, 5, 7, a, b)),
    ...TRANS.map(([a, b]) => mm('1×1×1', [], [], 1, 1, 1, a, b)),
    ...TRANS.map(([a, b]) => mm('gemv', [], [], 1, 65, 33, a, b)),
    ...TRANS.map(([a, b]) => mm('M=4 rows', [], [], 4, 33, 17, a, b)),
    ...TRANS.map(([a, b]) => mm('odd', [], [], 7, 17, 65, a, b)),
    ...TRANS.map(([a, b]) => mm('threaded', [], [], 257, 300, 129, a, b, true)),
    ...TRANS.map(([a, b]) => mm('few rows, split columns', [], [], 7, 300, 1000, a, b, true)),
    ...TRANS.map(([a, b]) => mm('batched', [2, 3], [2, 3], 7, 17, 5, a, b)),
    ...TRANS.map(([a, b]) => mm('shared weight', [2, 3], [], 7, 17, 5, a, b)),
    mm('many small (parallel over batch)', [33], [33], 9, 7, 5, false, true),
    mm('batched threaded', [2], [2], 65, 300, 33, true, false, true),
    mm('shared weight folded, threaded', [3, 65], [], 1, 257, 129, false, true, true),
    mm('N past one column block (NC = 3072)', [], [], 7, 17, 3100, false, false),
    mm('K=0', [], [], 3, 0, 4, false, false),
    mm('M=0', [2], [], 0, 5, 4, false, false),
  ],
  add: [
    { label: 'same shape', inputs: [{ shape: [3, 7] }, { shape: [3, 7] }], params: NONE },
    { label: 'broadcast both', inputs: [{ shape: [4, 1, 5] }, { shape: [3, 1] }], params: NONE },
    { label: 'row vector', inputs: [{ shape: [2, 3, 17] }, { shape: [17] }], params: NONE },
    { label: 'scalar', inputs: [{ shape: [] }, { shape: [5, 3] }], params: NONE },
    { label: 'column', inputs: [{ shape: [65, 33] }, { shape: [65, 1] }], params: NONE },
    { label: 'threaded', inputs: [{ shape: [300, 257] }, { shape: [257] }], params: NONE, big: true },
  ],
  sub: [
    { label: 'same shape', inputs: [{ shape: [17, 33] }, { shape: [17, 33] }], params: NONE },
    { label: 'broadcast a', inputs: [{ shape: [1, 7] }, { shape: [5, 3, 7] }], params: NONE },
    { label: 'middle axis', inputs: [{ shape: [3, 1, 5] }, { shape: [3, 4, 5] }], params: NONE },
  ],
  mul: [
    { label: 'same shape', inputs: [{ shape: [1] }, { shape: [1] }], params: NONE },
    { label: 'broadcast', inputs: [{ shape: [2, 1, 17] }, { shape: [7, 1] }], params: NONE },
    { label: 'threaded', inputs: [{ shape: [129, 300] }, { shape: [129, 300] }], params: NONE, big: true },
  ],
  affine: [
    { label: 'odd', inputs: [{ shape: [17, 33] }], params: { a: 1.7, b: -0.3 } },
    { label: 'empty', inputs: [{ shape: [0, 3] }], params: { a: 2, b: 1 } },
  ],
  sumTo: [
    { label: 'to column', inputs: [{ shape: [4, 3, 5] }], params: { shape: [3, 1] } },
    { label: 'bias grad', inputs: [{ shape: [65, 33] }], params: { shape: [33] } },
    { label: 'row sums', inputs: [{ shape: [65, 33] }], params: { shape: [65, 1] } },
    { label: 'to scalar', inputs: [{ shape: [2, 3, 4] }], params: { shape: [] } },
    { label: 'mixed', inputs: [{ shape: [7, 1, 5, 3] }], params: { shape: [1, 1, 5, 1] } },
    { label: 'identity', inputs: [{ shape: [3, 7] }], params: { shape: [3, 7] } },
    { label: 'scalar to scalar', inputs: [{ shape: [] }], params: { shape: [] } },
    { label: 'threaded, leading axes summed', inputs: [{ shape: [300, 257] }], params: { shape: [257] }, big: true },
    { label: 'threaded, leading axis kept', inputs: [{ shape: [2, 300, 65] }], params: { shape: [2, 1, 65] }, big: true },
  ],
  sumSquares: [
    { label: 'one', inputs: [{ shape: [1] }], params: NONE },
    { label: 'odd', inputs: [{ shape: [17, 33] }], params: NONE },
    { label: 'several chunks', inputs: [{ shape: [300, 1000] }], params: NONE, big: true },
  ],
  permute: [
    { label: 'heads ↔ time', inputs: [{ shape: [2, 3, 4, 5] }], params: { perm: [0, 2, 1, 3] } },
    { label: 'transpose', inputs: [{ shape: [17, 33] }], params: { perm: [1, 0] } },
    { label: 'reverse with a unit axis', inputs: [{ shape: [3, 1, 7, 5] }], params: { perm: [3, 2, 1, 0] } },
    { label: 'last axis moves', inputs: [{ shape: [2, 17, 3, 33] }], params: { perm: [0, 3, 1, 2] } },
    { label: 'identity', inputs: [{ shape: [3, 7] }], params: { perm: [0, 1] } },
    { label: 'threaded transpose', inputs: [{ shape: [257, 300] }], params: { perm: [1, 0] }, big: true },
  ],
  narrow: [
    { label: 'middle', inputs: [{ shape: [3, 7, 17] }], params: { start: 2, len: 5 } },
    { label: 'all', inputs: [{ shape: [33] }], params: { start: 0, len: 33 } },
    { label: 'empty', inputs: [{ shape: [5, 9] }], params: { start: 9, len: 0 } },
  ],
  pad: [
    { label: 'middle', inputs: [{ shape: [3, 5] }], params: { start: 2, total: 9 } },
    { label: 'full', inputs: [{ shape: [7, 1] }], params: { start: 0, total: 1 } },
    { label: 'rows', inputs: [{ shape: [2, 65, 3] }], params: { start: 30, total: 33 } },
  ],
  concat: [
    { label: 'odd', inputs: [{ shape: [3, 4, 5] }, { shape: [3, 4, 7] }], params: NONE },
    { label: 'empty a', inputs: [{ shape: [17, 0] }, { shape: [17, 3] }], params: NONE },
    { label: 'rank 1', inputs: [{ shape: [1] }, { shape: [65] }], params: NONE },
  ],
  rmsnorm: [
    { label: 'one row', inputs: [{ shape: [1, 7] }, { shape: [7] }], params: { eps: 1e-5 } },
    { label: 'rank 3', inputs: [{ shape: [3, 17, 65] }, { shape: [65] }], params: { eps: 1e-6 } },
    { label: 'large values', inputs: [{ shape: [5, 33], range: [-300, 300] }, { shape: [33] }], params: { eps: 1e-5 } },
    { label: 'threaded', inputs: [{ shape: [257, 300] }, { shape: [300] }], params: { eps: 1e-5 }, big: true },
  ],
  rmsnormBackward: [
    {
      label: 'odd',
      inputs: [{ shape: [7, 33] }, { shape: [7, 33] }, { shape: [33] }, { shape: [7], range: [0.5, 2] }],
      params: NONE,
    },
    {
      label: 'rank 3',
      inputs: [{ shape: [2, 3, 17] }, { shape: [2, 3, 17] }, { shape: [17] }, { shape: [2, 3], range: [0.5, 2] }],
      params: NONE,
    },
    {
      label: 'threaded',
      inputs: [{ shape: [257, 300] }, { shape: [257, 300] }, { shape: [300] }, { shape: [257], range: [0.5, 2] }],
      params: NONE,
      big: true,
    },
  ],
  rope: [
    { label: 'half', inputs: [{ shape: [2, 7, 3, 16] }], params: (r) => ropeParams(r, 7, 0, 8, 'half', false) },
    { label: 'adjacent', inputs: [{ shape: [2, 7, 3, 16] }], params: (r) => ropeParams(r, 7, 0, 8, 'adjacent', false) },
    { label: 'half slice, inverse', inputs: [{ shape: [1, 5, 2, 12] }], params: (r) => ropeParams(r, 5, 4, 3, 'half', true) },
    { label: 'adjacent slice', inputs: [{ shape: [3, 1, 1, 9] }], params: (r) => ropeParams(r, 1, 1, 4, 'adjacent', true) },
    { label: 'threaded', inputs: [{ shape: [2, 65, 8, 64] }], params: (r) => ropeParams(r, 65, 32, 16, 'half', false), big: true },
  ],
  attention: [
    attn('MHA', 2, 7, 7, 3, 3, 16, 16, { scale: 0.25, qOffset: 0, kvLen: 7, vDim: 16 }),
    attn('GQA 4/2', 1, 17, 17, 4, 2, 8, 8, { scale: 0.35, qOffset: 0, kvLen: 17, vDim: 8 }),
    attn('GQA 6/4 (uneven groups)', 1, 5, 5, 6, 4, 7, 5, { scale: 0.4, qOffset: 0, kvLen: 5, vDim: 5 }),
    attn('MQA', 2, 3, 3, 5, 1, 16, 16, { scale: 0.25, qOffset: 0, kvLen: 3, vDim: 16 }),
    attn('qOffset, kvLen < S, vDim < Dvs', 2, 3, 17, 4, 2, 16, 20, { scale: 0.25, qOffset: 10, kvLen: 13, vDim: 12 }),
    attn('decode', 1, 1, 65, 4, 1, 32, 32, { scale: 0.18, qOffset: 64, kvLen: 65, vDim: 32 }),
    attn('two query rows', 1, 2, 70, 2, 1, 16, 16, { scale: 0.25, qOffset: 60, kvLen: 70, vDim: 16 }),
    attn('queries past kvLen', 1, 9, 33, 2, 2, 16, 16, { scale: 0.25, qOffset: 20, kvLen: 24, vDim: 16 }),
    attn('vDim 0', 1, 3, 3, 2, 1, 4, 4, { scale: 0.5, qOffset: 0, kvLen: 3, vDim: 0 }),
    // Scores up to ±144: the online softmax must rescale correctly.
    attn('large scores', 1, 33, 33, 2, 1, 16, 16, { scale: 1, qOffset: 0, kvLen: 33, vDim: 16 }, [-3, 3]),
    attn('threaded, several key blocks', 1, 130, 130, 4, 2, 32, 24, { scale: 0.18, qOffset: 0, kvLen: 130, vDim: 24 }, undefined, true),
  ],
  attentionBackward: [
    attnBack('MHA', 2, 7, 7, 3, 3, 16, 16, 0.25, 0),
    attnBack('GQA 4/2', 1, 17, 17, 4, 2, 8, 8, 0.35, 0),
    attnBack('GQA 6/4, Dk ≠ Dv', 1, 5, 5, 6, 4, 7, 5, 0.4, 0),
    attnBack('qOffset', 2, 5, 12, 2, 1, 16, 16, 0.25, 7),
    attnBack('threaded, several key blocks', 1, 130, 130, 4, 1, 32, 24, 0.18, 0, true),
  ],
  // Calibration statistics: the softmax and the sums in double over f32 scores, so the default tolerance holds.
  attentionDistance: [
    { label: 'MHA prefill', inputs: [{ shape: [2, 7, 3, 16] }, { shape: [2, 7, 3, 16] }], params: { scale: 0.25, qOffset: 0 } },
    { label: 'GQA 6/4 (uneven groups), odd dims', inputs: [{ shape: [1, 5, 6, 7] }, { shape: [1, 5, 4, 7] }], params: { scale: 0.4, qOffset: 0 } },
    { label: 'decode rows at an offset, S > qOffset + T', inputs: [{ shape: [3, 1, 4, 16] }, { shape: [3, 20, 2, 16] }], params: { scale: 0.25, qOffset: 12 } },
    { label: 'large scores', inputs: [{ shape: [1, 33, 2, 16], range: [-3, 3] }, { shape: [1, 33, 1, 16], range: [-3, 3] }], params: { scale: 1, qOffset: 0 } },
    { label: 'threaded', inputs: [{ shape: [2, 130, 8, 64] }, { shape: [2, 130, 2, 64] }], params: { scale: 0.125, qOffset: 0 }, big: true },
  ],
  swiglu: [
    { label: 'odd', inputs: [{ shape: [3, 7] }, { shape: [3, 7] }], params: NONE },
    { label: 'wide range', inputs: [{ shape: [257, 129], range: [-100, 30] }, { shape: [257, 129] }], params: NONE, big: true },
  ],
  swigluBackward: [
    { label: 'odd', inputs: [{ shape: [3, 7] }, { shape: [3, 7] }, { shape: [3, 7] }], params: NONE },
    {
      label: 'wide range',
      inputs: [{ shape: [257, 129] }, { shape: [257, 129], range: [-100, 30] }, { shape: [257, 129] }],
      params: NONE,
      big: true,
    },
  ],
  embedding: [
    { label: 'repeats', inputs: [{ shape: [17, 33] }], params: (r) => ({ ids: ints(r, 9, 0, 17) }) },
    { label: 'one', inputs: [{ shape: [1, 1] }], params: { ids: Int32Array.of(0) } },
    { label: 'threaded', inputs: [{ shape: [1000, 65] }], params: (r) => ({ ids: ints(r, 1000, 0, 1000) }), big: true },
  ],
  embeddingBackward: [
    { label: 'repeats', inputs: [{ shape: [9, 33] }], params: (r) => ({ ids: ints(r, 9, 0, 17), vocab: 17 }) },
    { label: 'all one id', inputs: [{ shape: [65, 7] }], params: { ids: new Int32Array(65), vocab: 3 } },
    { label: 'threaded', inputs: [{ shape: [300, 65] }], params: (r) => ({ ids: ints(r, 300, 0, 50), vocab: 50 }), big: true },
  ],
  crossEntropy: [
    { label: 'ignored rows', inputs: [{ shape: [7, 33], range: [-5, 5] }], params: (r) => ({ targets: ints(r, 7, -1, 33) }) },
    { label: 'V=1', inputs: [{ shape: [1, 1] }], params: { targets: Int32Array.of(0) } },
    { label: 'wide logits', inputs: [{ shape: [65, 1000], range: [-30, 30] }], params: (r) => ({ targets: ints(r, 65, 0, 1000) }), big: true },
  ],
  crossEntropyBackward: [
    {
      label: 'ignored rows',
      inputs: [{ shape: [7, 33], range: [-5, 5] }, { shape: [7] }],
      params: (r) => ({ targets: ints(r, 7, -1, 33) }),
    },
    {
      label: 'wide logits',
      inputs: [{ shape: [65, 1000], range: [-30, 30] }, { shape: [65] }],
      params: (r) => ({ targets: ints(r, 65, 0, 1000) }),
      big: true,
    },
  ],
  klDiv: [
    { label: 'τ=1', inputs: [{ shape: [7, 33] }, { shape: [7, 33] }], params: { temperature: 1 } },
    { label: 'τ=2, wide logits', inputs: [{ shape: [33, 1000], range: [-20, 20] }, { shape: [33, 1000], range: [-20, 20] }], params: { temperature: 2 }, big: true },
    { label: 'τ=0.5, V=1', inputs: [{ shape: [3, 1] }, { shape: [3, 1] }], params: { temperature: 0.5 } },
  ],
  klDivBackward: [
    { label: 'τ=1', inputs: [{ shape: [7, 33] }, { shape: [7, 33] }, { shape: [7] }], params: { temperature: 1 } },
    {
      label: 'τ=2, wide logits',
      inputs: [{ shape: [33, 1000], range: [-20, 20] }, { shape: [33, 1000], range: [-20, 20] }, { shape: [33] }],
      params: { temperature: 2 },
      big: true,
    },
  ],
  adamw: [
    {
      label: 'step 1',
      inputs: [{ shape: [17, 33] }, { shape: [17, 33] }, { shape: [17, 33] }, { shape: [17, 33], range: [0, 1] }],
      params: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1 },
    },
    {
      label: 'step 10, no decay',
      inputs: [{ shape: [7] }, { shape: [7], range: [-1e-3, 1e-3] }, { shape: [7] }, { shape: [7], range: [0, 1e-4] }],
      params: { lr: 3e-4, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0, step: 10 },
    },
    {
      label: 'threaded',
      inputs: [{ shape: [300, 257] }, { shape: [300, 257] }, { shape: [300, 257] }, { shape: [300, 257], range: [0, 1] }],
      params: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 },
      big: true,
    },
  ],
  writeAt: [
    { label: 'rows', inputs: [{ shape: [5, 7] }, { shape: [2, 7] }], params: { offset: 14 } },
    { label: 'empty at end', inputs: [{ shape: [100] }, { shape: [0] }], params: { offset: 100 } },
    { label: 'start', inputs: [{ shape: [3, 3] }, { shape: [3, 3] }], params: { offset: 0 } },
    // A batch of 3 cache rows: 2 new positions of 5 values each, at position 4 of a 9-position cache.
    { label: 'strided blocks', inputs: [{ shape: [3, 9, 5] }, { shape: [3, 2, 5] }], params: { offset: 20, blocks: 3, stride: 45 } },
  ],
};

// ---------------------------------------------------------------------------------------------------------------

function describeParams(p: object): string {
  return JSON.stringify(p, (_k, v: unknown) =>
    v instanceof Int32Array || v instanceof Float64Array ? `${v.constructor.name}(${v.length})` : v,
  );
}

/** Worst relative error seen in the current op's cases (reported as a test diagnostic). */
let worst = 0;

/** Compares one output; returns a failure line or null. */
function compare(name: string, got: Tensor, want: Tensor, tol: number): string | null {
  if (got.shape.join(',') !== want.shape.join(',')) {
    return `${name}: shape [${got.shape.join(', ')}], want [${want.shape.join(', ')}]`;
  }
  const err = relError(got.data, want.data);
  if (!(err <= worst)) worst = err;
  if (err <= tol) return null;
  let rms = 0;
  for (let i = 0; i < want.size; i++) rms += want.data[i]! ** 2;
  rms = Math.sqrt(rms / Math.max(want.size, 1));
  let maxDiff = 0;
  let firstBad = -1;
  for (let i = 0; i < want.size; i++) {
    const d = Math.abs(got.data[i]! - want.data[i]!);
    if (!(d <= maxDiff)) maxDiff = d;
    if (firstBad < 0 && !(d <= tol * (Math.abs(want.data[i]!) + rms))) firstBad = i;
  }
  const at = firstBad >= 0 ? ` first bad index ${firstBad}: got ${got.data[firstBad]}, want ${want.data[firstBad]}` : '';
  return `${name}: rel error ${err.toExponential(2)} > ${tol}, max |diff| ${maxDiff.toExponential(2)}${at}`;
}

type Compare = (name: string, got: Tensor, want: Tensor, tol: number) => string | null;

/**
 * Runs one case on `be` and on ref and compares every output (in-place ops: every input after the call) with
 * `cmp`; `plantInto` may change the random inputs before `build`. Returns failure lines (empty when it passes).
 */
function runOnBoth<O extends OpName>(
  be: Backend, op: O, c: Case<O>, seed: number, label: string, cmp: Compare, plantInto?: (inputs: Tensor[]) => void,
): string[] {
  const rng = mulberry32(seed);
  let inputs = c.inputs.map((s) => Tensor.rand(s.shape, rng, s.range?.[0] ?? -1, s.range?.[1] ?? 1));
  const params = typeof c.params === 'function' ? c.params(rng) : c.params;
  plantInto?.(inputs);
  if (c.build) inputs = c.build(inputs, params);
  const refIn = inputs.map((t) => t.to('f64'));
  const beIn = inputs.map((t) => t.clone());
  const tol = c.tol ?? DEFAULT_TOL;
  const head = `${be.name}.${op} [${label}] inputs ${inputs.map((t) => `[${t.shape.join(', ')}]`).join(' ')} params ${describeParams(params)}`;
  let want: Tensor[];
  let got: Tensor[];
  try {
    want = refBackend.run(op, refIn as unknown as OpInputs<O>, params) as Tensor[];
    got = be.run(op, beIn as unknown as OpInputs<O>, params) as Tensor[];
  } catch (e) {
    return [`${head}: threw ${(e as Error).message}`];
  }
  if (got.length !== want.length) return [`${head}: ${got.length} outputs, want ${want.length}`];
  const pairs: [string, Tensor, Tensor][] =
    want.length > 0 ? got.map((g, i) => [`output ${i}`, g, want[i]!]) : beIn.map((g, i) => [`input ${i}`, g, refIn[i]!]);
  const bad: string[] = [];
  for (const [name, g, w] of pairs) {
    if (g.dtype !== 'f32') bad.push(`${name}: dtype ${g.dtype}, want f32`);
    const r = cmp(name, g, w, tol);
    if (r) bad.push(r);
  }
  return bad.map((b) => `${head}: ${b}`);
}

/** Runs one case on `be` and on ref; returns failure lines (empty when it passes). */
function runCase<O extends OpName>(be: Backend, op: O, c: Case<O>, seed: number): string[] {
  return runOnBoth(be, op, c, seed, c.label, compare);
}

// ---------------------------------------------------------------------------------------------------------------
// Non-finite inputs (issue 11: no silent wrong numbers). Every case runs again with NaN, +∞ and −∞ (each alone, then
// mixed) planted at 1–3 seeded random positions of every float input (before `build`, so the attention backward gets
// the o and lse the ref forward gives for those q, k, v). It passes when the backend puts NaN, +∞ and −∞ at exactly
// the positions ref does, and the finite values agree within the case's tolerance. The ref computes each op's
// textbook formula in float64 IEEE arithmetic, so its non-finite pattern is the specification: a kernel must not
// hide a NaN behind a max/compare, a zero test or a masked-row branch.

type Kind = 'nan' | '+inf' | '-inf';
const KIND_VALUE: Record<Kind, number> = { nan: NaN, '+inf': Infinity, '-inf': -Infinity };
const VARIANTS: (Kind | 'mixed')[] = ['nan', '+inf', '-inf', 'mixed'];

/** Writes 1–3 non-finite values of `variant` at random positions of each non-empty input. */
function plant(inputs: Tensor[], variant: Kind | 'mixed', rng: Rng): void {
  const kinds: Kind[] = ['nan', '+inf', '-inf'];
  for (const t of inputs) {
    if (t.size === 0) continue;
    const n = 1 + Math.floor(rng() * Math.min(3, t.size));
    for (let i = 0; i < n; i++) {
      const kind = variant === 'mixed' ? kinds[Math.floor(rng() * 3)]! : variant;
      t.data[Math.floor(rng() * t.size)] = KIND_VALUE[kind];
    }
  }
}

const classify = (x: number): string => (Number.isNaN(x) ? 'NaN' : x === Infinity ? '+Inf' : x === -Infinity ? '-Inf' : 'finite');

/** Same non-finite pattern, then the finite entries within tol; returns a failure line or null. */
function compareNonFinite(name: string, got: Tensor, want: Tensor, tol: number): string | null {
  if (got.shape.join(',') !== want.shape.join(',')) {
    return `${name}: shape [${got.shape.join(', ')}], want [${want.shape.join(', ')}]`;
  }
  const g: number[] = [];
  const w: number[] = [];
  let mismatches = 0;
  let first = '';
  for (let i = 0; i < want.size; i++) {
    const a = classify(got.data[i]!);
    const b = classify(want.data[i]!);
    if (a !== b) {
      if (mismatches++ === 0) first = `first at index ${i}: got ${got.data[i]}, want ${want.data[i]}`;
    } else if (a === 'finite') {
      g.push(got.data[i]!);
      w.push(want.data[i]!);
    }
  }
  if (mismatches > 0) return `${name}: non-finite pattern differs at ${mismatches} of ${want.size} entries, ${first}`;
  const err = relError(g, w);
  return err <= tol ? null : `${name}: finite entries rel error ${err.toExponential(2)} > ${tol}`;
}

/** Runs one case with planted non-finite inputs on `be` and on ref; returns failure lines. */
function runNonFiniteCase<O extends OpName>(be: Backend, op: O, c: Case<O>, seed: number, variant: Kind | 'mixed'): string[] {
  const plantInto = (inputs: Tensor[]) => plant(inputs, variant, mulberry32(seed * 7919 + VARIANTS.indexOf(variant)));
  return runOnBoth(be, op, c, seed, `${c.label}, ${variant}`, compareNonFinite, plantInto);
}

const others = availableBackends().filter((n) => n !== 'ref');
const cpuStatus = backendStatus().find((s) => s.name === 'cpu');

test('the case table covers every op', () => {
  for (const op of OP_NAMES) assert.ok(CASES[op].length > 0, `no conformance case for ${op}`);
  assert.equal(Object.keys(CASES).length, OP_NAMES.length);
});

if (others.length === 0) {
  const reason = `no non-ref backend available (cpu: ${cpuStatus?.reason ?? 'unknown'})`;
  console.log(`conformance: skipped, ${reason}`);
  test('backend conformance', { skip: reason }, () => {});
}

for (const name of others) {
  const be = getBackend(name);
  const cpu = name === 'cpu' ? (be as CpuBackend) : null;
  test(`${name}: supports() and delegation`, () => {
    for (const op of OP_NAMES) assert.equal(be.supports(op, 'f32'), true, `${name} should run ${op} natively on f32`);
    // f64 (gradient checks) is delegated to ref and gives ref's result exactly.
    const rng = mulberry32(7);
    const a = Tensor.rand([3, 5], rng, -1, 1, 'f64');
    const b = Tensor.rand([5, 2], rng, -1, 1, 'f64');
    const [c] = be.run('matmul', [a, b], { transA: false, transB: false });
    const [r] = refBackend.run('matmul', [a, b], { transA: false, transB: false });
    assert.equal(c.dtype, 'f64');
    assert.deepEqual(Array.from(c.data), Array.from(r.data));
  });

  test(`${name}: invalid input is a thrown error naming the op and shapes`, () => {
    const a = Tensor.zeros([2, 3]);
    const b = Tensor.zeros([4, 5]);
    assert.throws(() => be.run('matmul', [a, b], { transA: false, transB: false }), /cpu\.matmul: .*\[2, 3\].*\[4, 5\]/);
    assert.throws(() => be.run('embedding', [Tensor.zeros([3, 2])], { ids: Int32Array.of(3) }), /cpu\.embedding: ids\[0\] = 3/);
  });

  for (const op of OP_NAMES) {
    test(`${name}: ${op} matches ref`, (t) => {
      const cases = CASES[op] as Case<typeof op>[];
      const failures: string[] = [];
      worst = 0;
      cases.forEach((c, i) => {
        const seed = 1000 * (OP_NAMES.indexOf(op) + 1) + i;
        failures.push(...runCase(be, op, c, seed));
        if (c.big && cpu) {
          const n = cpu.threads;
          for (const t of [1, 3]) {
            cpu.setThreads(t);
            try {
              failures.push(...runCase(be, op, c, seed).map((f) => `(threads=${t}) ${f}`));
            } finally {
              cpu.setThreads(n);
            }
          }
        }
        // With OpenBLAS loaded, matmul cases run again on the own packed kernel.
        if (op === 'matmul' && cpu && cpu.blasInfo().blasEnabled) {
          cpu.setBlasEnabled(false);
          try {
            failures.push(...runCase(be, op, c, seed).map((f) => `(own sgemm) ${f}`));
          } finally {
            cpu.setBlasEnabled(true);
          }
        }
      });
      t.diagnostic(`${cases.length} cases, worst rel error ${worst.toExponential(2)}`);
      if (failures.length > 0) {
        for (const f of failures) console.log(f);
        assert.fail(`${failures.length} failing case(s):\n${failures.join('\n')}`);
      }
    });
  }
}

for (const name of others) {
  const be = getBackend(name);
  const cpu = name === 'cpu' ? (be as CpuBackend) : null;
  for (const op of OP_NAMES) {
    test(`${name}: ${op} propagates NaN and ±Inf as ref does`, () => {
      const cases = CASES[op] as Case<typeof op>[];
      const failures: string[] = [];
      cases.forEach((c, i) => {
        const seed = 1000 * (OP_NAMES.indexOf(op) + 1) + i;
        for (const variant of VARIANTS) {
          failures.push(...runNonFiniteCase(be, op, c, seed, variant));
          if (op === 'matmul' && cpu && cpu.blasInfo().blasEnabled) {
            cpu.setBlasEnabled(false);
            try {
              failures.push(...runNonFiniteCase(be, op, c, seed, variant).map((f) => `(own sgemm) ${f}`));
            } finally {
              cpu.setBlasEnabled(true);
            }
          }
        }
      });
      if (failures.length > 0) {
        for (const f of failures) console.log(f);
        assert.fail(`${failures.length} failing case(s):\n${failures.join('\n')}`);
      }
    });
  }

  // Random planting never makes a whole key block −∞ while later blocks stay finite, the case where an online
  // softmax must give p = 0 (not exp(−∞ − −∞) = NaN) and still rescale correctly when the first finite block comes.
  // q[…, 0] = 1 and k[j < 64, 0] = −∞: queries t < 64 see only −∞ scores (NaN rows, as in ref), later ones are finite.
  test(`${name}: attention forward and backward when the first key block's scores are all −∞`, () => {
    const [B, T, H, Hkv, D] = [1, 80, 2, 1, 16];
    const rng = mulberry32(4242);
    const q = Tensor.rand([B, T, H, D], rng);
    const k = Tensor.rand([B, T, Hkv, D], rng);
    const v = Tensor.rand([B, T, Hkv, D], rng);
    const dout = Tensor.rand([B, T, H, D], rng);
    for (let r = 0; r < T * H; r++) q.data[r * D] = 1;
    for (let j = 0; j < 64; j++) k.data[j * Hkv * D] = -Infinity;
    const p = { scale: 0.25, qOffset: 0, kvLen: T, vDim: D };
    const [o, lse] = refBackend.run('attention', [q, k, v], p);
    assert.ok(Number.isNaN(o.data[0]!) && Number.isFinite(o.data[64 * H * D]!), 'rows t < 64 NaN, t ≥ 64 finite in ref');
    const failures: string[] = [];
    const check = <O extends OpName>(op: O, inputs: Tensor[], params: OpParams<O>) => {
      const want = refBackend.run(op, inputs.map((t) => t.to('f64')) as unknown as OpInputs<O>, params) as OpOutputs<O> as Tensor[];
      const got = be.run(op, inputs.map((t) => t.clone()) as unknown as OpInputs<O>, params) as OpOutputs<O> as Tensor[];
      got.forEach((g, i) => {
        const r = compareNonFinite(`${op} output ${i}`, g, want[i]!, DEFAULT_TOL);
        if (r) failures.push(r);
      });
    };
    const n = cpu?.threads ?? 0;
    for (const threads of cpu ? [n, 1, 3] : [n]) {
      if (cpu) cpu.setThreads(threads);
      try {
        check('attention', [q, k, v], p);
        check('attentionBackward', [dout, q, k, v, o, lse], { scale: p.scale, qOffset: 0 });
      } finally {
        if (cpu) cpu.setThreads(n);
      }
    }
    assert.deepEqual(failures, []);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The native boundary: bad arguments reaching the addon directly are thrown errors, never a crash.

const cpuBe = loadCpuBackend();
test('cpu addon: malformed calls throw', { skip: !cpuBe.available && `cpu backend unavailable: ${cpuStatus?.reason}` }, () => {
  const req = createRequire(import.meta.url);
  const addon = req('../../build/Release/mla_cpu.node') as {
    run(op: string, params: Float64Array, ...arrays: unknown[]): void;
  };
  const P = (...v: number[]) => Float64Array.from(v);
  const f = (n: number) => new Float32Array(n);
  assert.throws(() => addon.run('matmul', P(1, 2, 2, 2, 0, 0, 0), f(4), f(3), f(4)), /matmul: array argument 1 has 3 elements, expected 4/);
  assert.throws(() => addon.run('matmul', P(1, 2, 2, 2, 0, 0, 0), f(4), new Int32Array(4), f(4)), /must be a Float32Array/);
  assert.throws(() => addon.run('matmul', P(1, 2, 2.5, 2, 0, 0, 0), f(4), f(4), f(4)), /not an integer/);
  assert.throws(() => addon.run('matmul', P(1, 2), f(4), f(4), f(4)), /missing parameter/);
  assert.throws(() => addon.run('noSuchOp', P()), /no native kernel/);
  assert.throws(() => addon.run('embedding', P(2, 1, 1), f(2), Int32Array.of(5), f(1)), /outside \[0, 2\)/);
  assert.throws(() => addon.run('writeAt', P(3, 1, 0), f(4), f(2)), /past the end/);
  assert.throws(() => addon.run('add', P(1, 4, 1, 1), f(4), f(2), f(4)), /reach past/);
});

// ---------------------------------------------------------------------------------------------------------------
// The LAPACK linear algebra provider against the TypeScript one.

function matmulF64(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p]!;
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + x * b[p * n + j]!;
    }
  }
  return c;
}

const lapackSkip = !cpuBe.available
  ? `cpu backend unavailable: ${cpuStatus?.reason}`
  : cpuBe.linalg.name !== 'lapack'
    ? `LAPACKE not loaded (${cpuBe.blasInfo().lapackReason}); linalg is ${cpuBe.linalg.name}`
    : false;
if (lapackSkip) console.log(`conformance: linalg provider test skipped, ${lapackSkip}`);

test('cpu linalg (LAPACK) matches the TypeScript provider', { skip: lapackSkip }, () => {
  if (!cpuBe.available) return;
  const la = cpuBe.linalg;
  const rng = mulberry32(99);
  for (const [m, n] of [[40, 25], [25, 40], [1, 7], [33, 33]] as [number, number][]) {
    const a = Float64Array.from({ length: m * n }, () => 2 * rng() - 1);
    const r = la.svd(a, m, n);
    const t = tsLinalg.svd(a, m, n);
    assert.equal(r.k, Math.min(m, n));
    // U·diag(s)·Vᵀ reconstructs A; singular values descend and equal the TypeScript ones; U has orthonormal columns.
    const us = r.u.map((x, i) => x * r.s[i % r.k]!);
    assert.ok(relError(matmulF64(us, r.vt, m, r.k, n), a) < 1e-12, `svd ${m}×${n} reconstruction`);
    assert.ok(relError(r.s, t.s) < 1e-10, `svd ${m}×${n} singular values vs ts`);
    for (let i = 1; i < r.k; i++) assert.ok(r.s[i - 1]! >= r.s[i]!, 'descending');
    const ut = new Float64Array(r.k * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < r.k; j++) ut[j * m + i] = r.u[i * r.k + j]!;
    const eye = Float64Array.from({ length: r.k * r.k }, (_, i) => (i % (r.k + 1) === 0 ? 1 : 0));
    assert.ok(relError(matmulF64(ut, r.u, r.k, m, r.k), eye) < 1e-12, `svd ${m}×${n} U orthonormal`);
  }
  for (const n of [1, 7, 33]) {
    const x = Float64Array.from({ length: n * n }, () => 2 * rng() - 1);
    const a = x.map((_, i) => x[i]! + x[(i % n) * n + Math.floor(i / n)]!);
    const r = la.eigh(a, n);
    const t = tsLinalg.eigh(a, n);
    assert.ok(relError(r.values, t.values) < 1e-10, `eigh ${n} values vs ts`);
    for (let i = 1; i < n; i++) assert.ok(r.values[i - 1]! >= r.values[i]!, 'descending');
    const av = matmulF64(a, r.vectors, n, n, n);
    const vl = r.vectors.map((v, i) => v * r.values[i % n]!);
    assert.ok(relError(av, vl) < 1e-10, `eigh ${n}: A·V = V·Λ`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Storage dtypes. Every kernel on every storage dtype it accepts, against ref: matmul's weight operand b and the
// embedding table may be bf16 or f16 (tensor/storage.ts); activations stay f32. Two comparisons per case:
//  - "rounded": ref on the same half weights (widened exactly, float64 accumulation) — only the f32 accumulation
//    differs, so the f32 tolerance 1e-5 holds;
//  - "vs f32 weights": against ref on the unrounded f64 weights — the weight rounding itself: bf16 keeps 8 significant
//    bits (relative step 2^-8, error per weight ≤ 2^-9 ≈ 2e-3), so ≤ 1e-2 (DESIGN.md numerics); f16 keeps 11 bits
//    (≤ 2^-12 ≈ 2.4e-4 per weight), so ≤ 1e-3.
// ref itself on half storage must equal ref on the widened weights exactly (the same float64 sums).

const HALF_TOL: Record<'bf16' | 'f16', number> = { bf16: 1e-2, f16: 1e-3 };

interface HalfCase {
  label: string;
  /** matmul: a (…, M, K), b (…, K, N) or (…, N, K) with transB; never transA (weights are the b operand). */
  batchA: number[];
  batchB: number[];
  M: number;
  K: number;
  N: number;
  transB: boolean;
  big?: boolean;
}

const hm = (label: string, M: number, K: number, N: number, transB: boolean, batchA: number[] = [], batchB: number[] = [], big = false): HalfCase =>
  ({ label: `${label} M=${M} K=${K} N=${N}${transB ? ' transB' : ''}`, batchA, batchB, M, K, N, transB, big });

const HALF_MATMUL: HalfCase[] = [
  ...[false, true].flatMap((tB) => [
    hm('small', 3, 5, 7, tB),
    hm('1×1×1', 1, 1, 1, tB),
    hm('decode gemv', 1, 65, 33, tB),
    hm('M=4 rows', 4, 33, 17, tB),
    hm('odd', 7, 17, 65, tB),
    hm('threaded', 257, 300, 129, tB, [], [], true),
    hm('few rows, split columns', 7, 300, 1000, tB, [], [], true),
    hm('shared weight (batch folded into M)', 7, 17, 5, tB, [2, 3]),
    hm('batched weight', 7, 17, 5, tB, [2, 3], [2, 3]),
  ]),
  // N·K past the 8 Mi-float widening tile (native/cpu/half.cpp): two column blocks, the second partial (M above the
  // 64 rows that read the weight row by row).
  hm('two widening tiles', 65, 260, 32300, true),
  // Decode batches (4 < M ≤ 64 with transB: weight rows read once per block of A rows): partial row and column
  // blocks, K tails shorter than a vector (AVX-512 16 lanes, AVX2 8).
  hm('decode batch, K tail', 13, 100, 23, true),
  hm('decode batch of 64', 64, 33, 14, true),
  hm('decode batch, threaded', 32, 515, 301, true, [], [], true),
  hm('decode, folded batch', 1, 257, 129, true, [3]),
  // Decode x·Wᵀ at real widths: weight streams longer than the kernels' 4 KiB prefetch distance, split over threads
  // at row counts that are not multiples of the 4/3-row blocks (the prefetch stops at each thread's last row).
  hm('decode gemv, prefetched rows', 1, 576, 151, true, [], [], true),
  hm('decode gemv, long odd rows', 1, 1543, 37, true, [], [], true),
  hm('K=0', 3, 0, 4, true),
  hm('M=0', 0, 5, 4, true, [2]),
];

/** Inputs and ref results of one half-weight matmul case, computed once and shared by every backend and variant. */
interface HalfMatmulData {
  a: Tensor;
  bHalf: Tensor;
  params: OpParams<'matmul'>;
  /** ref on the half storage (widened exactly, float64 accumulation). */
  rounded: Tensor;
  /** ref on the unrounded f64 weights. */
  unrounded: Tensor;
  /** Whether ref on half storage equals ref on the widened f64 weights exactly (small cases only). */
  refExact: boolean | null;
}

const halfData = new Map<string, HalfMatmulData>();

function halfMatmulData(c: HalfCase, dtype: 'bf16' | 'f16', seed: number): HalfMatmulData {
  const key = `${c.label} ${dtype}`;
  const hit = halfData.get(key);
  if (hit) return hit;
  const rng = mulberry32(seed);
  const a = Tensor.rand([...c.batchA, c.M, c.K], rng);
  const bExact = Tensor.rand([...c.batchB, ...(c.transB ? [c.N, c.K] : [c.K, c.N])], rng, -1, 1, 'f64');
  const bHalf = bExact.to(dtype);
  const params = { transA: false, transB: c.transB };
  const a64 = a.to('f64');
  const [rounded] = refBackend.run('matmul', [a64, bHalf], params);
  const [unrounded] = refBackend.run('matmul', [a64, bExact], params);
  let refExact: boolean | null = null;
  if (c.M * c.N * c.K < 1e6) {
    const [widened] = refBackend.run('matmul', [a64, bHalf.to('f64')], params);
    refExact = Array.from(widened.data).every((x, i) => x === rounded.data[i]);
  }
  const d = { a, bHalf, params, rounded, unrounded, refExact };
  halfData.set(key, d);
  return d;
}

function halfMatmulCase(be: Backend, c: HalfCase, dtype: 'bf16' | 'f16', seed: number): string[] {
  const d = halfMatmulData(c, dtype, seed);
  const head = `${be.name}.matmul ${dtype} [${c.label}]`;
  const out: string[] = [];
  if (d.refExact === false) out.push(`${head}: ref on ${dtype} storage differs from ref on the widened weights`);
  try {
    const got = be === refBackend ? d.rounded : be.run('matmul', [d.a, d.bHalf], d.params)[0];
    if (be !== refBackend && got.dtype !== 'f32') out.push(`${head}: output dtype ${got.dtype}, want f32`);
    const r1 = compare('rounded', got, d.rounded, DEFAULT_TOL);
    if (r1) out.push(`${head}: ${r1}`);
    const r2 = compare('vs f32 weights', got, d.unrounded, HALF_TOL[dtype]);
    if (r2) out.push(`${head}: ${r2}`);
  } catch (e) {
    out.push(`${head}: threw ${(e as Error).message}`);
  }
  return out;
}

function halfEmbeddingCase(be: Backend, V: number, C: number, N: number, dtype: 'bf16' | 'f16', seed: number): string[] {
  const rng = mulberry32(seed);
  const exact = Tensor.rand([V, C], rng, -2, 2, 'f64');
  const table = exact.to(dtype);
  const ids = ints(rng, N, 0, V);
  const head = `${be.name}.embedding ${dtype} [V=${V} C=${C} N=${N}]`;
  const out: string[] = [];
  try {
    const [got] = be.run('embedding', [table], { ids });
    const [rounded] = refBackend.run('embedding', [table], { ids });
    const [unrounded] = refBackend.run('embedding', [exact], { ids });
    if (got.dtype !== 'f32') out.push(`${head}: output dtype ${got.dtype}, want f32`);
    // Widening is exact on both sides: the rows must be identical.
    if (got.size > 0 && relError(got.data, rounded.data) !== 0) out.push(`${head}: rows differ from ref's widened rows`);
    const r = compare('vs f32 table', got, unrounded, HALF_TOL[dtype]);
    if (r) out.push(`${head}: ${r}`);
  } catch (e) {
    out.push(`${head}: threw ${(e as Error).message}`);
  }
  return out;
}

for (const name of availableBackends()) {
  const be = getBackend(name);
  const cpu = name === 'cpu' ? (be as CpuBackend) : null;
  test(`${name}: supports() says which ops take bf16/f16 storage`, () => {
    for (const op of OP_NAMES) {
      for (const dt of ['bf16', 'f16'] as const) assert.equal(be.supports(op, dt), op === 'matmul' || op === 'embedding', `${name}.supports(${op}, ${dt})`);
    }
    // Half storage anywhere else is a clear error, never a silent conversion.
    const x = Tensor.zeros([2, 3], 'bf16');
    assert.throws(() => be.run('affine', [x], { a: 1, b: 0 }), new RegExp(`${name}\\.affine: input 0 is bf16`));
    assert.throws(() => be.run('matmul', [x, Tensor.zeros([3, 2])], { transA: false, transB: false }), new RegExp(`${name}\\.matmul: input 0 is bf16`));
  });

  for (const dtype of ['bf16', 'f16'] as const) {
    test(`${name}: matmul with a ${dtype} weight matches ref (rounded: ≤ 1e-5; vs f32 weights: ≤ ${HALF_TOL[dtype]})`, (t) => {
      const failures: string[] = [];
      HALF_MATMUL.forEach((c, i) => {
        const seed = 90_000 + i + (dtype === 'f16' ? 500 : 0);
        failures.push(...halfMatmulCase(be, c, dtype, seed));
        if (c.big && cpu) {
          const n = cpu.threads;
          for (const th of [1, 3]) {
            cpu.setThreads(th);
            try {
              failures.push(...halfMatmulCase(be, c, dtype, seed).map((f) => `(threads=${th}) ${f}`));
            } finally {
              cpu.setThreads(n);
            }
          }
        }
        if (cpu && cpu.blasInfo().blasEnabled) {
          cpu.setBlasEnabled(false);
          try {
            failures.push(...halfMatmulCase(be, c, dtype, seed).map((f) => `(own sgemm) ${f}`));
          } finally {
            cpu.setBlasEnabled(true);
          }
        }
        // An AVX-512 box also runs the AVX2 kernels (what an AVX2-only CI machine runs).
        if (cpu && cpu.blasInfo().simd === 'avx512') {
          cpu.setSimd('avx2');
          try {
            failures.push(...halfMatmulCase(be, c, dtype, seed).map((f) => `(avx2 kernels) ${f}`));
          } finally {
            cpu.setSimd('avx512');
          }
        }
      });
      t.diagnostic(`${HALF_MATMUL.length} cases on ${cpu ? cpu.blasInfo().simd : 'ref'}${cpu?.blasInfo().simd === 'avx512' ? ' and avx2' : ''}`);
      if (failures.length > 0) assert.fail(`${failures.length} failing case(s):\n${failures.join('\n')}`);
    });

    test(`${name}: embedding from a ${dtype} table matches ref (exact rows; vs f32 table ≤ ${HALF_TOL[dtype]})`, () => {
      const failures = [
        ...halfEmbeddingCase(be, 7, 5, 9, dtype, 1),
        ...halfEmbeddingCase(be, 61, 48, 33, dtype, 2),
        ...halfEmbeddingCase(be, 300, 257, 1000, dtype, 3),
        ...halfEmbeddingCase(be, 3, 0, 4, dtype, 4),
      ];
      if (failures.length > 0) assert.fail(failures.join('\n'));
    });
  }

  test(`${name}: storage members: allocate/upload/download/free with live-buffer accounting, every dtype`, () => {
    for (const dt of DTYPES) {
      const before = be.memory();
      const t = be.allocate([3, 5], dt);
      assert.equal(t.dtype, dt);
      assert.equal(be.memory().buffers, before.buffers + 1);
      assert.equal(be.memory().bytes, before.bytes + 15 * bytesPerElement(dt));
      const vals = Tensor.rand([3, 5], mulberry32(1), -3, 3).to(dt);
      const host = vals.storage.host().slice();
      const u = be.upload([3, 5], dt, host);
      assert.equal(u.storage.pool.name, be.name);
      assert.deepEqual(Array.from(be.download(u)), Array.from(vals.storage.host()));
      // Values survive a round trip through every other dtype at least to that dtype's precision.
      assert.ok(relError(u.toHost(), vals.toHost()) === 0);
      be.free(t);
      be.free(u);
      be.free(u); // idempotent
      vals.dispose();
      assert.equal(be.memory().buffers, before.buffers);
      assert.equal(be.memory().bytes, before.bytes);
      assert.throws(() => t.toHost(), /used after dispose/);
    }
    be.sync();
  });
}

// backends/cpu: the native backend, an N-API C++ addon (native/cpu/, built by `npm install` with node-gyp and g++)
// with threaded AVX2/FMA kernels, OpenBLAS/LAPACKE picked up at run time with dlopen when installed.
// This file loads the addon (or says why it cannot), validates every call in TypeScript (ref/validate.ts: shapes,
// dtypes, params) before any pointer reaches C++, allocates outputs as Float32Array charged to this backend's pool
// (backends/host.ts), and passes them in. f32 runs natively, and so do matmul with a bf16/f16 weight operand and
// embedding from a bf16/f16 table (native/cpu/half.cpp: widened on the fly, f32 accumulation); f64 (gradient
// checks) and any op the addon lacks delegate to the ref backend.
// Shape legend as in tensor/ops.ts.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, EighResult, LinalgProvider, SvdResult, Unavailable } from '../../tensor/backend.js';
import { Tensor, sizeOf } from '../../tensor/tensor.js';
import type { DType } from '../../tensor/tensor.js';
import { broadcastShape, OP_NAMES } from '../../tensor/ops.js';
import type { Kernels, OpInputs, OpName, OpOutputs, OpParams } from '../../tensor/ops.js';
import { refBackend, validateOp } from '../ref/index.js';
import { broadcastStrides } from '../ref/elementwise.js';
import { tsLinalg } from '../../linalg/ts-linalg.js';
import { BufferPool, isHalf, recycledF32, withPool } from '../../tensor/storage.js';
import { hostMemory } from '../host.js';
import { assertFiniteMatrix } from '../../tensor/finite.js';

type Arr = Float32Array | Int32Array | Float64Array | Uint16Array;

/** The addon's exports (native/cpu/addon.cpp). */
interface Addon {
  run(op: string, params: Float64Array, ...arrays: Arr[]): void;
  svd(a: Float64Array, m: number, n: number, u: Float64Array, s: Float64Array, vt: Float64Array): void;
  eigh(a: Float64Array, n: number, values: Float64Array, vectors: Float64Array): void;
  info(): AddonInfo;
  ops(): string[];
  setThreads(n: number): number;
  setBlasEnabled(on: boolean): boolean;
  /** Older builds lack it (then AVX-512 variants do not exist either). */
  setSimd?(level: 'avx512' | 'avx2'): string;
}

interface AddonInfo {
  threads: number;
  simd: string;
  avx512?: boolean;
  blas: string | null;
  blasReason: string;
  blasEnabled: boolean;
  lapack: boolean;
  lapackReason: string;
}

/** Which BLAS/LAPACK the cpu backend uses (for `mla info` and bench/). */
export interface BlasInfo {
  /** "OpenBLAS 0.3.21 …" when libopenblas.so.0 is loaded, null when the own kernels run. */
  blas: string | null;
  /** Why OpenBLAS is not used ('' when it is). */
  blasReason: string;
  /** Whether matmul currently calls OpenBLAS (loaded and not switched off by setBlasEnabled(false)). */
  blasEnabled: boolean;
  /** Whether LAPACKE (liblapacke.so.3) is loaded: linalg is then 'lapack', else the TypeScript provider. */
  lapack: boolean;
  lapackReason: string;
  /** The kernel variants in effect: 'avx512' (chosen at run time where the CPU has AVX-512 F/BW/VL/DQ, unless
   *  env MLA_SIMD=avx2 or setSimd('avx2')), else 'avx2+fma' or 'scalar' (what -march=native compiled). */
  simd: string;
  /** The CPU has AVX-512 F/BW/VL/DQ (setSimd('avx512') can take effect). */
  avx512: boolean;
  threads: number;
}

/** The cpu backend plus its controls. */
export interface CpuBackend extends Backend {
  readonly available: true;
  blasInfo(): BlasInfo;
  /** Threads for later ops (own kernels and OpenBLAS); returns the count in effect. */
  setThreads(n: number): number;
  /** Switch OpenBLAS off (own kernels) or back on; returns whether it is now used. For benchmarks. */
  setBlasEnabled(on: boolean): boolean;
  /** Kernel variants: 'avx512' (where supported) or 'avx2' (forced, as an AVX2-only machine runs); returns the simd
   *  in effect (blasInfo().simd). For tests and benchmarks. */
  setSimd(level: 'avx512' | 'avx2'): string;
  /** C = op(A)·op(B) into a preallocated c (M·N), no allocation: the timed call of bench/sgemm.ts.
   *  a is (M, K) or (K, M) when transA, b is (K, N) or (N, K) when transB; lengths are checked natively. */
  sgemm(M: number, N: number, K: number, a: Float32Array, b: Float32Array, c: Float32Array, transA?: boolean, transB?: boolean): void;
}

/** build/Release/mla_cpu.node of the package this file belongs to (works from src/ and from dist/src/). */
function findAddon(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'build', 'Release', 'mla_cpu.node');
    if (existsSync(p)) return p;
    if (existsSync(join(dir, 'package.json'))) return null;
    dir = dirname(dir);
  }
  return null;
}

let cached: CpuBackend | Unavailable | undefined;

/** The cpu backend, or {available: false, reason} when the addon is not built, fails to load, or is switched off
 *  by MLA_NO_NATIVE=1. Loads once; never throws. */
export function loadCpuBackend(): CpuBackend | Unavailable {
  if (cached) return cached;
  cached = load();
  return cached;
}

/** BlasInfo of the loaded addon, or the reason it is unavailable. */
export function blasInfo(): BlasInfo | Unavailable {
  const be = loadCpuBackend();
  return be.available ? be.blasInfo() : be;
}

function load(): CpuBackend | Unavailable {
  const off = process.env['MLA_NO_NATIVE'];
  if (off && off !== '0') return { available: false, reason: 'disabled by MLA_NO_NATIVE' };
  const path = findAddon();
  if (!path) {
    return {
      available: false,
      reason: 'build/Release/mla_cpu.node is not built (run `npm install` or `npm run build:native`; needs g++)',
    };
  }
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (e) {
    return { available: false, reason: `${path} failed to load: ${(e as Error).message}` };
  }
  try {
    return makeBackend(addon, new Set(addon.ops()));
  } catch (e) {
    return { available: false, reason: `${path} loaded but did not initialise: ${(e as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Argument packing: each kernel builds the params vector and array list that its C++ entry point documents.

/** An input or output array for one addon call (kernelHost: the addon keeps no array past the call). */
function f32(t: Tensor): Float32Array {
  return t.storage.kernelHost() as Float32Array;
}

/** A zeroed op output whose array is recycled when it is disposed without having been read out (tensor/storage.ts). */
function zeros(shape: readonly number[]): Tensor {
  const t = new Tensor(shape, recycledF32(sizeOf(shape)));
  t.storage.markRecyclable();
  return t;
}

function rowsOf(shape: readonly number[]): number {
  return sizeOf(shape.slice(0, -1));
}

const P = (...v: number[]): Float64Array => Float64Array.from(v);

function makeKernels(addon: Addon): Kernels {
  const run = (op: string, params: Float64Array, ...arrays: Arr[]): void => addon.run(op, params, ...arrays);
  const binary = (op: 'add' | 'sub' | 'mul') => ([a, b]: [Tensor, Tensor]): [Tensor] => {
    if (a.rank >= 1 && a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i])) {
      // Same shapes (a residual add): rows × last axis, no broadcast strides to build.
      const cols = a.dim(-1);
      const out = zeros(a.shape);
      run(op, P(2, rowsOf(a.shape), cols, cols, 1, cols, 1), f32(a), f32(b), f32(out));
      return [out];
    }
    const shape = broadcastShape(a.shape, b.shape);
    const r = shape.length;
    const out = zeros(shape);
    run(op, P(r, ...shape, ...broadcastStrides(a.shape, r), ...broadcastStrides(b.shape, r)), f32(a), f32(b), f32(out));
    return [out];
  };
  return {
    matmul([a, b], { transA, transB }) {
      const ra = a.rank;
      const M = transA ? a.dim(-1) : a.dim(-2);
      const K = transA ? a.dim(-2) : a.dim(-1);
      const N = transB ? b.dim(-2) : b.dim(-1);
      const batchShape = a.shape.slice(0, ra - 2);
      const batch = sizeOf(batchShape);
      const out = zeros([...batchShape, M, N]);
      const bBatched = b.rank > 2;
      // A shared weight with row-major a: the batch folds into M, one large product instead of many small ones.
      if (!bBatched && !transA) {
        run('matmul', P(1, batch * M, N, K, 0, transB ? 1 : 0, 0), f32(a), f32(b), f32(out));
      } else {
        run('matmul', P(batch, M, N, K, transA ? 1 : 0, transB ? 1 : 0, bBatched ? 1 : 0), f32(a), f32(b), f32(out));
      }
      return [out];
    },
    add: binary('add'),
    sub: binary('sub'),
    mul: binary('mul'),
    affine([x], { a, b }) {
      const out = zeros(x.shape);
      run('affine', P(a, b), f32(x), f32(out));
      return [out];
    },
    sumTo([x], { shape }) {
      const out = zeros(shape);
      run('sumTo', P(x.rank, ...x.shape, ...broadcastStrides(shape, x.rank)), f32(x), f32(out));
      return [out];
    },
    sumSquares([x]) {
      const out = zeros([]);
      run('sumSquares', P(), f32(x), f32(out));
      return [out];
    },
    permute([x], { perm }) {
      const xStrides = new Array<number>(x.rank);
      let s = 1;
      for (let i = x.rank - 1; i >= 0; i--) {
        xStrides[i] = s;
        s *= x.shape[i]!;
      }
      const out = zeros(perm.map((p) => x.shape[p]!));
      run('permute', P(x.rank, ...out.shape, ...perm.map((p) => xStrides[p]!)), f32(x), f32(out));
      return [out];
    },
    narrow([x], { start, len }) {
      const out = zeros([...x.shape.slice(0, -1), len]);
      run('narrow', P(rowsOf(x.shape), x.dim(-1), start, len), f32(x), f32(out));
      return [out];
    },
    pad([x], { start, total }) {
      const out = zeros([...x.shape.slice(0, -1), total]);
      run('pad', P(rowsOf(x.shape), x.dim(-1), start, total), f32(x), f32(out));
      return [out];
    },
    concat([a, b]) {
      const out = zeros([...a.shape.slice(0, -1), a.dim(-1) + b.dim(-1)]);
      run('concat', P(rowsOf(a.shape), a.dim(-1), b.dim(-1)), f32(a), f32(b), f32(out));
      return [out];
    },
    rmsnorm([x, w], { eps }) {
      const y = zeros(x.shape);
      const rstd = zeros(x.shape.slice(0, -1));
      run('rmsnorm', P(rowsOf(x.shape), x.dim(-1), eps), f32(x), f32(w), f32(y), f32(rstd));
      return [y, rstd];
    },
    rmsnormBackward([dy, x, w, rstd]) {
      const dx = zeros(x.shape);
      const dw = zeros([x.dim(-1)]);
      run('rmsnormBackward', P(rowsOf(x.shape), x.dim(-1)), f32(dy), f32(x), f32(w), f32(rstd), f32(dx), f32(dw));
      return [dx, dw];
    },
    rope([x], { start, invFreq, positions, pairing, inverse }) {
      const [B, T, H, D] = x.shape as [number, number, number, number];
      const out = zeros(x.shape);
      const params = P(B, T, H, D, start, invFreq.length, pairing === 'adjacent' ? 1 : 0, inverse ? 1 : 0);
      run('rope', params, f32(x), invFreq, positions, f32(out));
      return [out];
    },
    attention([q, k, v], { scale, qOffset, kvLen, vDim }) {
      const [B, T, H, Dk] = q.shape as [number, number, number, number];
      const [, S, Hkv] = k.shape as [number, number, number, number];
      const o = zeros([B, T, H, vDim]);
      const lse = zeros([B, H, T]);
      const params = P(B, T, H, Dk, S, Hkv, v.dim(3), scale, qOffset, kvLen, vDim);
      run('attention', params, f32(q), f32(k), f32(v), f32(o), f32(lse));
      return [o, lse];
    },
    attentionDistance([q, k], { scale, qOffset }) {
      const [B, T, H, Dk] = q.shape as [number, number, number, number];
      const [, S, Hkv] = k.shape as [number, number, number, number];
      const dist = zeros([H, S]);
      run('attentionDistance', P(B, T, H, Dk, S, Hkv, scale, qOffset), f32(q), f32(k), f32(dist));
      return [dist];
    },
    attentionBackward([dout, q, k, v, o, lse], { scale, qOffset }) {
      const [B, T, H, Dk] = q.shape as [number, number, number, number];
      const [, S, Hkv] = k.shape as [number, number, number, number];
      const dq = zeros(q.shape);
      const dk = zeros(k.shape);
      const dv = zeros(v.shape);
      const params = P(B, T, H, Dk, S, Hkv, v.dim(3), scale, qOffset);
      const ins = [dout, q, k, v, o, lse].map(f32);
      run('attentionBackward', params, ...ins, f32(dq), f32(dk), f32(dv));
      return [dq, dk, dv];
    },
    swiglu([g, u]) {
      const y = zeros(g.shape);
      run('swiglu', P(), f32(g), f32(u), f32(y));
      return [y];
    },
    swigluBackward([dy, g, u]) {
      const dg = zeros(g.shape);
      const du = zeros(g.shape);
      run('swigluBackward', P(), f32(dy), f32(g), f32(u), f32(dg), f32(du));
      return [dg, du];
    },
    embedding([table], { ids }) {
      const [V, C] = table.shape as [number, number];
      const out = zeros([ids.length, C]);
      run('embedding', P(V, C, ids.length), f32(table), ids, f32(out));
      return [out];
    },
    embeddingBackward([dy], { ids, vocab }) {
      const C = dy.dim(1);
      const out = zeros([vocab, C]);
      run('embeddingBackward', P(vocab, C, ids.length), f32(dy), ids, f32(out));
      return [out];
    },
    crossEntropy([logits], { targets }) {
      const [N, V] = logits.shape as [number, number];
      const out = zeros([N]);
      run('crossEntropy', P(N, V), f32(logits), targets, f32(out));
      return [out];
    },
    crossEntropyBackward([logits, dloss], { targets }) {
      const [N, V] = logits.shape as [number, number];
      const out = zeros([N, V]);
      run('crossEntropyBackward', P(N, V), f32(logits), f32(dloss), targets, f32(out));
      return [out];
    },
    klDiv([student, teacher], { temperature }) {
      const [N, V] = student.shape as [number, number];
      const out = zeros([N]);
      run('klDiv', P(N, V, temperature), f32(student), f32(teacher), f32(out));
      return [out];
    },
    klDivBackward([student, teacher, dloss], { temperature }) {
      const [N, V] = student.shape as [number, number];
      const out = zeros([N, V]);
      run('klDivBackward', P(N, V, temperature), f32(student), f32(teacher), f32(dloss), f32(out));
      return [out];
    },
    adamw([param, grad, m, v], { lr, beta1, beta2, eps, weightDecay, step }) {
      run('adamw', P(lr, beta1, beta2, eps, weightDecay, step), f32(param), f32(grad), f32(m), f32(v));
      return [];
    },
    writeAt([dst, src], { offset, blocks = 1, stride = 0 }) {
      run('writeAt', P(offset, blocks, stride), f32(dst), f32(src));
      return [];
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Linear algebra through LAPACKE (float64).

function lapackLinalg(addon: Addon): LinalgProvider {
  const check = (a: Float64Array, len: number, what: string, dims: number[]): void => {
    if (!(a instanceof Float64Array)) throw new Error(`lapack.${what}: a must be a Float64Array`);
    if (!dims.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`lapack.${what}: sizes [${dims.join(', ')}] must be non-negative integers`);
    }
    if (a.length !== len) throw new Error(`lapack.${what}: a has ${a.length} values, [${dims.join(', ')}] needs ${len}`);
    if (dims.some((d) => d >= 2 ** 31)) throw new Error(`lapack.${what}: [${dims.join(', ')}] too large for LAPACK`);
  };
  return {
    name: 'lapack',
    svd(a: Float64Array, m: number, n: number): SvdResult {
      check(a, m * n, 'svd', [m, n]);
      // LAPACK given NaN fails with "argument 5 invalid" and given ±∞ returns garbage: refuse as the TS provider does.
      assertFiniteMatrix('svd', a, n);
      const k = Math.min(m, n);
      const u = new Float64Array(m * k);
      const s = new Float64Array(k);
      const vt = new Float64Array(k * n);
      addon.svd(a, m, n, u, s, vt);
      return { u, s, vt, m, n, k };
    },
    eigh(a: Float64Array, n: number): EighResult {
      check(a, n * n, 'eigh', [n, n]);
      assertFiniteMatrix('eigh', a, n);
      const values = new Float64Array(n);
      const vectors = new Float64Array(n * n);
      addon.eigh(a, n, values, vectors);
      return { values, vectors, n };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

/** Owner of the cpu backend's buffers. */
export const cpuPool = new BufferPool('cpu', true);

/** matmul with a bf16/f16 b (f32 a, not transposed) and embedding from a bf16/f16 table: native/cpu/half.cpp. */
function halfKernel(addon: Addon, op: 'matmul' | 'embedding', inputs: Tensor[], params: OpParams<'matmul'> | OpParams<'embedding'>): Tensor {
  if (op === 'embedding') {
    const table = inputs[0]!;
    const { ids } = params as OpParams<'embedding'>;
    const [V, C] = table.shape as [number, number];
    const out = zeros([ids.length, C]);
    addon.run('embeddingHalf', P(V, C, ids.length, table.dtype === 'bf16' ? 1 : 0), table.halfBits(), ids, f32(out));
    return out;
  }
  const [a, b] = inputs as [Tensor, Tensor];
  const { transB } = params as OpParams<'matmul'>;
  const M = a.dim(-2);
  const K = a.dim(-1);
  const N = transB ? b.dim(-2) : b.dim(-1);
  const batchShape = a.shape.slice(0, -2);
  const batch = sizeOf(batchShape);
  const out = zeros([...batchShape, M, N]);
  const bBatched = b.rank > 2;
  const bf16 = b.dtype === 'bf16' ? 1 : 0;
  // A shared weight: the batch folds into M (one product with the weight read once).
  if (!bBatched) addon.run('matmulHalf', P(1, batch * M, N, K, transB ? 1 : 0, 0, bf16), f32(a), b.halfBits(), f32(out));
  else addon.run('matmulHalf', P(batch, M, N, K, transB ? 1 : 0, 1, bf16), f32(a), b.halfBits(), f32(out));
  return out;
}

/** native: the ops the addon implements (an older build may lack some; those run on ref). */
function makeBackend(addon: Addon, native: Set<string>): CpuBackend {
  const kernels = makeKernels(addon);
  const halfOps = { matmul: native.has('matmulHalf'), embedding: native.has('embeddingHalf') };
  let threads = addon.info().threads;
  const linalg = addon.info().lapack ? lapackLinalg(addon) : tsLinalg;
  const nativeOps = new Set<string>(OP_NAMES.filter((op) => native.has(op)));
  const backend: CpuBackend = {
    available: true,
    name: 'cpu',
    dtype: 'f32',
    ...hostMemory(cpuPool),
    supports(op: OpName, dtype: DType): boolean {
      switch (dtype) {
        case 'f32':
          return nativeOps.has(op);
        case 'bf16':
        case 'f16':
          return (op === 'matmul' && halfOps.matmul) || (op === 'embedding' && halfOps.embedding);
        case 'f64':
          return false;
        default: {
          const never: never = dtype;
          throw new Error(`cpu.supports: unknown dtype ${String(never)}`);
        }
      }
    },
    run<O extends OpName>(op: O, inputs: OpInputs<O>, params: OpParams<O>): OpOutputs<O> {
      const ins = inputs as readonly Tensor[];
      const first = ins[0];
      if (op === 'matmul' || op === 'embedding') {
        const w = op === 'matmul' ? ins[1] : first;
        if (w instanceof Tensor && isHalf(w.dtype)) {
          const transA = op === 'matmul' && (params as OpParams<'matmul'>).transA;
          validateOp('cpu', op, inputs, params);
          if (!halfOps[op as 'matmul' | 'embedding'] || transA || (op === 'matmul' && first?.dtype !== 'f32')) return refBackend.run(op, inputs, params);
          return withPool(cpuPool, () => [halfKernel(addon, op, ins.slice(), params as OpParams<'matmul'>)]) as OpOutputs<O>;
        }
      }
      if (!nativeOps.has(op) || (first instanceof Tensor && first.dtype !== 'f32')) {
        // Checked here first so errors name this backend; ref checks again (cheap next to a ref kernel).
        validateOp('cpu', op, inputs, params);
        return refBackend.run(op, inputs, params);
      }
      validateOp('cpu', op, inputs, params);
      for (const t of ins) {
        // Dense row-major f32 is the only layout the addon reads (validateOp checked all inputs share a dtype).
        if (t.dtype !== 'f32' || t.size !== sizeOf(t.shape)) {
          throw new Error(`cpu.${op}: input ${fmtShape(t.shape)} is not a dense f32 tensor`);
        }
      }
      // The mapped Kernels type cannot be indexed by a generic O without widening; the table is complete by its type.
      const kernel = kernels[op] as (i: OpInputs<O>, p: OpParams<O>) => OpOutputs<O>;
      return withPool(cpuPool, () => kernel(inputs, params));
    },
    linalg,
    get threads(): number {
      return threads;
    },
    blasInfo(): BlasInfo {
      const i = addon.info();
      return {
        blas: i.blas,
        blasReason: i.blasReason,
        blasEnabled: i.blasEnabled,
        lapack: i.lapack,
        lapackReason: i.lapackReason,
        simd: i.simd,
        avx512: i.avx512 ?? false,
        threads: i.threads,
      };
    },
    setThreads(n: number): number {
      if (!Number.isInteger(n) || n < 1) throw new Error(`cpu.setThreads: expected an integer ≥ 1, got ${n}`);
      threads = addon.setThreads(n);
      return threads;
    },
    setSimd(level: 'avx512' | 'avx2'): string {
      return addon.setSimd ? addon.setSimd(level) : addon.info().simd;
    },
    setBlasEnabled(on: boolean): boolean {
      return addon.setBlasEnabled(on);
    },
    sgemm(M, N, K, a, b, c, transA = false, transB = false): void {
      addon.run('matmul', P(1, M, N, K, transA ? 1 : 0, transB ? 1 : 0, 0), a, b, c);
    },
  };
  return backend;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

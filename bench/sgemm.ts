// sgemm throughput of the cpu backend: the own packed AVX2/FMA kernel (native/cpu/matmul.cpp) against OpenBLAS
// measured in the same run when libopenblas.so.0 is loaded. Not a test; never gates anything on a time.
// Usage: node dist/bench/sgemm.js [--sizes 256,512,1024,2048] [--threads 1,2] [--own-only] [--quick] [--json]
//   --own-only (or env MLA_NO_BLAS=1, which stops OpenBLAS from loading at all) times the own kernel only;
//   --quick drops 2048 and spends a quarter of the time per point.
// Prints a markdown table (GFLOP/s = 2·n³ / median seconds per call) and, with --json, JSON lines instead.
// Inputs and the output buffer are built before timing; each timed call is one C = A·B into a preallocated C;
// every (size, threads, implementation) point is checked against float64 dot products before it is timed.
// Second table: x·Wᵀ with a bf16 weight W (N, K) = (8192, 2048) for M = 1 (decode), 32 (a calibration sampling batch)
// and 64 rows, the cpu backend's half kernels (native/cpu/half.cpp) on their AVX-512 and AVX2 variants (setSimd;
// AVX-512 only where the CPU has it) against the same product with the weight in f32 through OpenBLAS (or the own
// sgemm): what bf16 storage costs or saves against f32 weights. Each point is checked against ref first.

import { parseArgs } from 'node:util';
import { loadCpuBackend, type CpuBackend } from '../src/backends/cpu/index.js';
import { mulberry32 } from '../src/tensor/rng.js';
import { table } from '../src/report/table.js';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { refBackend } from '../src/backends/ref/index.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    threads: { type: 'string' },
    'own-only': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const loaded = loadCpuBackend();
if (!loaded.available) {
  process.stderr.write(`sgemm bench: the cpu backend is not available: ${loaded.reason}\n`);
  process.exit(1);
}
const cpu: CpuBackend = loaded;
const info = cpu.blasInfo();
const defaultThreads = cpu.threads;

const parseList = (s: string | undefined, fallback: number[]): number[] => {
  if (s === undefined) return fallback;
  const v = s.split(',').map((x) => Number(x.trim()));
  if (!v.every((x) => Number.isInteger(x) && x > 0)) {
    process.stderr.write(`sgemm bench: expected a comma-separated list of positive integers, got '${s}'\n`);
    process.exit(2);
  }
  return v;
};
const sizes = parseList(values.sizes, values.quick ? [256, 512, 1024] : [256, 512, 1024, 2048]);
const threadList = [...new Set(parseList(values.threads, [1, defaultThreads]))];
type Impl = 'own' | 'openblas';
const impls: Impl[] = info.blas && !values['own-only'] ? ['own', 'openblas'] : ['own'];
// Floating-point work per point: enough calls to total this many flops (at least 3 calls).
const budget = values.quick ? 5e9 : 2e10;

process.stderr.write(
  `sgemm bench: simd ${info.simd}, BLAS: ${info.blas ?? `OpenBLAS absent (${info.blasReason})`}, ` +
    `threads ${threadList.join('/')}, sizes ${sizes.join('/')}\n`,
);

/** Max relative error of 64 sampled entries of C against float64 dot products. */
function check(n: number, a: Float32Array, b: Float32Array, c: Float32Array): number {
  const rng = mulberry32(n);
  let worst = 0;
  for (let s = 0; s < 64; s++) {
    const i = Math.floor(rng() * n);
    const j = Math.floor(rng() * n);
    let want = 0;
    let mag = 0;
    for (let k = 0; k < n; k++) {
      want += a[i * n + k]! * b[k * n + j]!;
      mag += Math.abs(a[i * n + k]! * b[k * n + j]!);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j]! - want) / mag);
  }
  return worst;
}

interface Point {
  n: number;
  threads: number;
  impl: Impl;
  gflops: number;
  medianMs: number;
  reps: number;
}

const points: Point[] = [];
for (const n of sizes) {
  const rng = mulberry32(1234 + n);
  const a = Float32Array.from({ length: n * n }, () => 2 * rng() - 1);
  const b = Float32Array.from({ length: n * n }, () => 2 * rng() - 1);
  const c = new Float32Array(n * n);
  const flops = 2 * n * n * n;
  const reps = Math.max(3, Math.ceil(budget / flops));
  for (const t of threadList) {
    for (const impl of impls) {
      cpu.setThreads(t);
      cpu.setBlasEnabled(impl === 'openblas');
      c.fill(0);
      cpu.sgemm(n, n, n, a, b, c); // warm-up: page faults, packing buffers, thread start
      const err = check(n, a, b, c);
      if (!(err < 1e-5)) {
        process.stderr.write(`sgemm bench: ${impl} n=${n} threads=${t} gives wrong results (rel error ${err})\n`);
        process.exit(1);
      }
      const times: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint();
        cpu.sgemm(n, n, n, a, b, c);
        times.push(Number(process.hrtime.bigint() - t0) / 1e9);
      }
      times.sort((x, y) => x - y);
      const med = times[Math.floor(times.length / 2)]!;
      const p: Point = { n, threads: t, impl, gflops: flops / med / 1e9, medianMs: med * 1e3, reps };
      points.push(p);
      process.stderr.write(`  n=${n} threads=${t} ${impl}: ${p.gflops.toFixed(1)} GFLOP/s (median of ${reps})\n`);
      if (values.json) {
        process.stdout.write(
          JSON.stringify({
            bench: 'sgemm', n, threads: t, impl, gflops: p.gflops, median_ms: p.medianMs, reps,
            simd: info.simd, blas: impl === 'openblas' ? info.blas : null,
          }) + '\n',
        );
      }
    }
  }
}
cpu.setThreads(defaultThreads);
cpu.setBlasEnabled(true);

if (!values.json) {
  const withBlas = impls.includes('openblas');
  const header = ['n', 'threads', 'own GFLOP/s', ...(withBlas ? ['OpenBLAS GFLOP/s', 'own/OpenBLAS'] : [])];
  const rows: (string | number)[][] = [];
  for (const n of sizes) {
    for (const t of threadList) {
      const own = points.find((p) => p.n === n && p.threads === t && p.impl === 'own')!;
      // Preformatted strings: fixed decimals read better than the shared number format here.
      const row: (string | number)[] = [n, t, own.gflops.toFixed(1)];
      if (withBlas) {
        const ob = points.find((p) => p.n === n && p.threads === t && p.impl === 'openblas')!;
        row.push(ob.gflops.toFixed(1), (own.gflops / ob.gflops).toFixed(2));
      }
      rows.push(row);
    }
  }
  process.stdout.write(`sgemm C = A·B, f32, square n×n (own kernel: ${info.simd === "scalar" ? "scalar" : "AVX2+FMA"} packed (no AVX-512 variant yet)${withBlas ? `; ${info.blas}` : '; OpenBLAS not loaded'})\n\n`);
  process.stdout.write(table(header, rows) + '\n');
}

// ---- x·Wᵀ with a bf16 weight: the half kernels' AVX-512 and AVX2 variants against an f32 weight through sgemm ----
{
  const [K, N] = [2048, 8192];
  const rng = mulberry32(99);
  const w64 = Tensor.rand([N, K], rng, -1, 1, 'f64');
  const wb = w64.to('bf16');
  const wf = w64.to('f32');
  type HalfImpl = 'bf16 avx512' | 'bf16 avx2' | 'f32 weight, sgemm';
  const halfImpls: HalfImpl[] = [...(info.avx512 ? ['bf16 avx512' as const] : []), 'bf16 avx2', 'f32 weight, sgemm'];
  const rows: string[][] = [];
  for (const M of [1, 32, 64]) {
    const a = Tensor.rand([M, K], rng);
    const want = refBackend.run('matmul', [a.to('f64'), wb], { transA: false, transB: true })[0];
    for (const t of threadList) {
      cpu.setThreads(t);
      const cells: Record<string, number> = {};
      for (const impl of halfImpls) {
        cpu.setSimd(impl === 'bf16 avx2' ? 'avx2' : 'avx512');
        const w = impl === 'f32 weight, sgemm' ? wf : wb;
        const run = (): Tensor => cpu.run('matmul', [a, w], { transA: false, transB: true })[0];
        const got = run();
        const err = relError(got.data, want.data);
        // The f32 weight is the unrounded one: compare it with the bf16 rounding's tolerance (DESIGN.md numerics).
        if (!(err < (impl === 'f32 weight, sgemm' ? 1e-2 : 1e-5))) {
          process.stderr.write(`half bench: ${impl} M=${M} gives wrong results (rel error ${err})\n`);
          process.exit(1);
        }
        const flops = 2 * M * N * K;
        const reps = Math.max(3, Math.ceil(budget / 4 / flops));
        const times: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t0 = process.hrtime.bigint();
          run();
          times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        }
        times.sort((x, y) => x - y);
        const med = times[Math.floor(times.length / 2)]!;
        cells[impl] = flops / med / 1e9;
        process.stderr.write(`  x·Wᵀ M=${M} threads=${t} ${impl}: ${cells[impl]!.toFixed(1)} GFLOP/s (${(med * 1e3).toFixed(2)} ms, median of ${reps})\n`);
        if (values.json) process.stdout.write(JSON.stringify({ bench: 'half-matmul', M, N, K, threads: t, impl, gflops: cells[impl], median_ms: med * 1e3, reps }) + '\n');
      }
      const f32 = cells['f32 weight, sgemm']!;
      rows.push([String(M), String(t), ...halfImpls.map((i) => cells[i]!.toFixed(1)), ...halfImpls.filter((i) => i !== 'f32 weight, sgemm').map((i) => (cells[i]! / f32).toFixed(2))]);
    }
  }
  cpu.setThreads(defaultThreads);
  cpu.setSimd('avx512');
  if (!values.json) {
    const bf = halfImpls.filter((i) => i !== 'f32 weight, sgemm');
    process.stdout.write(`\nx·Wᵀ, W (${N}, ${K}) bf16 in memory (half kernels) vs f32 through ${info.blas ? 'OpenBLAS' : 'the own sgemm'}; GFLOP/s = 2·M·N·K / median seconds\n\n`);
    process.stdout.write(table(['M', 'threads', ...halfImpls.map((i) => `${i} GFLOP/s`), ...bf.map((i) => `${i} / f32`)], rows) + '\n');
  }
}

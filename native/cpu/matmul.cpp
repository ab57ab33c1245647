// Matrix multiply: C = op(A)·op(B), batched, overwriting C (no accumulation into the output).
// Shape legend: M rows of C, N columns of C, K the contracted axis; A (M, K) or stored (K, M) when transA,
// B (K, N) or stored (N, K) when transB.
// There is no backward kernel: dA = dC·Bᵀ and dB = Aᵀ·dC are matmuls with transB / transA (see ref/matmul.ts).
//
// With OpenBLAS loaded, cblas_sgemm does the work. Otherwise the own kernel, the GotoBLAS/BLIS structure:
//   for jc (NC columns of B)  for pc (KC of K): pack B block (KC × NC) into NR-wide panels, shared by all threads
//     for ic (MC rows of A, split over threads): pack A block (MC × KC) into MR-high panels (thread-local)
//       for jr (NR panel) for ir (MR panel): 6×16 register-tiled microkernel, 12 ymm accumulators, K-loop of FMAs.
// The B micro-panel (KC·NR floats = 16 KiB) stays in L1 while the A block (MC·KC = 144 KiB) streams from L2.
// Small M (≤ 4 rows, decode-time x·Wᵀ) skips packing: dot products or row updates straight from the operands.
#include <algorithm>
#include <cstring>

#include "blas.h"
#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

constexpr int64_t MR = 6;
constexpr int64_t NR = 16;
constexpr int64_t KC = 256;
constexpr int64_t MC = 144;   // multiple of MR
constexpr int64_t NC = 3072;  // multiple of NR

/** Element (i, j) of a logical matrix at p[i·rs + j·cs]; one of rs, cs is 1 (row-major or transposed storage). */
struct View {
  const float* p;
  int64_t rs;
  int64_t cs;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/** Ap[(panel·kc + k)·MR + r] = A(i0 + panel·MR + r, k0 + k), zero past row mc. */
void pack_a(const View& A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* Ap) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int64_t mr = std::min(MR, mc - ip);
    float* dst = Ap + ip * kc;
    if (A.cs == 1) {
      const float* rows[MR];
      for (int64_t r = 0; r < MR; r++) rows[r] = A.p + (i0 + ip + std::min(r, mr - 1)) * A.rs + k0;
      if (mr == MR) {
        for (int64_t k = 0; k < kc; k++) {
          for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = rows[r][k];
        }
      } else {
        for (int64_t k = 0; k < kc; k++) {
          for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? rows[r][k] : 0.0f;
        }
      }
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const float* src = A.p + (i0 + ip) + (k0 + k) * A.cs;
        for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? src[r] : 0.0f;
      }
    }
  }
}

/** Bp[(panel·kc + k)·NR + c] = B(k0 + k, j0 + panel·NR + c) for panels [p0, p1), zero past column nc. */
void pack_b(const View& B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t p0, int64_t p1, float* Bp) {
  for (int64_t panel = p0; panel < p1; panel++) {
    const int64_t jp = panel * NR;
    const int64_t nr = std::min(NR, nc - jp);
    float* dst = Bp + jp * kc;
    if (B.cs == 1) {
      for (int64_t k = 0; k < kc; k++) {
        const float* src = B.p + (k0 + k) * B.rs + j0 + jp;
        float* d = dst + k * NR;
        if (nr == NR) {
          std::memcpy(d, src, NR * sizeof(float));
        } else {
          for (int64_t c = 0; c < NR; c++) d[c] = c < nr ? src[c] : 0.0f;
        }
      }
    } else {
      // Transposed storage: read each column of op(B) contiguously, write with stride NR.
      for (int64_t c = 0; c < NR; c++) {
        if (c < nr) {
          const float* src = B.p + (j0 + jp + c) * B.cs + k0;
          for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = src[k];
        } else {
          for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = 0.0f;
        }
      }
    }
  }
}

/** C[0:mr, 0:nr] (=|+=) Ap-panel · Bp-panel over kc; the full MR×NR tile is computed in registers. */
inline void micro_kernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                         bool accumulate, int64_t mr, int64_t nr) {
#if MLA_AVX2
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(Bp);
    const __m256 b1 = _mm256_load_ps(Bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(Ap + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(Ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(Ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(Ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(Ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(Ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    Ap += MR;
    Bp += NR;
  }
  if (mr == MR && nr == NR) {
    float* r0 = C;
    float* r1 = C + ldc;
    float* r2 = C + 2 * ldc;
    float* r3 = C + 3 * ldc;
    float* r4 = C + 4 * ldc;
    float* r5 = C + 5 * ldc;
    if (accumulate) {
      c00 = _mm256_add_ps(c00, _mm256_loadu_ps(r0));
      c01 = _mm256_add_ps(c01, _mm256_loadu_ps(r0 + 8));
      c10 = _mm256_add_ps(c10, _mm256_loadu_ps(r1));
      c11 = _mm256_add_ps(c11, _mm256_loadu_ps(r1 + 8));
      c20 = _mm256_add_ps(c20, _mm256_loadu_ps(r2));
      c21 = _mm256_add_ps(c21, _mm256_loadu_ps(r2 + 8));
      c30 = _mm256_add_ps(c30, _mm256_loadu_ps(r3));
      c31 = _mm256_add_ps(c31, _mm256_loadu_ps(r3 + 8));
      c40 = _mm256_add_ps(c40, _mm256_loadu_ps(r4));
      c41 = _mm256_add_ps(c41, _mm256_loadu_ps(r4 + 8));
      c50 = _mm256_add_ps(c50, _mm256_loadu_ps(r5));
      c51 = _mm256_add_ps(c51, _mm256_loadu_ps(r5 + 8));
    }
    _mm256_storeu_ps(r0, c00);
    _mm256_storeu_ps(r0 + 8, c01);
    _mm256_storeu_ps(r1, c10);
    _mm256_storeu_ps(r1 + 8, c11);
    _mm256_storeu_ps(r2, c20);
    _mm256_storeu_ps(r2 + 8, c21);
    _mm256_storeu_ps(r3, c30);
    _mm256_storeu_ps(r3 + 8, c31);
    _mm256_storeu_ps(r4, c40);
    _mm256_storeu_ps(r4 + 8, c41);
    _mm256_storeu_ps(r5, c50);
    _mm256_storeu_ps(r5 + 8, c51);
    return;
  }
  alignas(32) float t[MR * NR];
  _mm256_store_ps(t + 0, c00);
  _mm256_store_ps(t + 8, c01);
  _mm256_store_ps(t + 16, c10);
  _mm256_store_ps(t + 24, c11);
  _mm256_store_ps(t + 32, c20);
  _mm256_store_ps(t + 40, c21);
  _mm256_store_ps(t + 48, c30);
  _mm256_store_ps(t + 56, c31);
  _mm256_store_ps(t + 64, c40);
  _mm256_store_ps(t + 72, c41);
  _mm256_store_ps(t + 80, c50);
  _mm256_store_ps(t + 88, c51);
#else
  float t[MR * NR] = {0};
  for (int64_t k = 0; k < kc; k++) {
    for (int64_t r = 0; r < MR; r++) {
      const float a = Ap[k * MR + r];
      for (int64_t c = 0; c < NR; c++) t[r * NR + c] += a * Bp[k * NR + c];
    }
  }
#endif
  for (int64_t r = 0; r < mr; r++) {
    float* row = C + r * ldc;
    if (accumulate) {
      for (int64_t c = 0; c < nr; c++) row[c] += t[r * NR + c];
    } else {
      for (int64_t c = 0; c < nr; c++) row[c] = t[r * NR + c];
    }
  }
}

thread_local Scratch<float> tl_pack_a;
thread_local Scratch<float> tl_pack_b;
thread_local Scratch<float> tl_rows;

/** One matrix product with the packed kernel; threads split each packed B block by rows of A (and columns when
 *  there are fewer row blocks than threads). Runs serially when called from inside a pool task. */
void gemm_packed(int64_t M, int64_t N, int64_t K, const View& A, const View& B, float* C, int64_t ldc) {
  const int64_t nt = num_threads();
  const bool par = 2.0 * M * N * K >= 2.0e6 && nt > 1;
  const int64_t n_jc = ceil_div(N, NC);
  const int64_t ncb = round_up(ceil_div(N, n_jc), NR);
  const int64_t n_pc = ceil_div(K, KC);
  const int64_t kcb = ceil_div(K, n_pc);
  const int64_t n_ic = ceil_div(M, MC);
  const int64_t mcb = round_up(ceil_div(M, n_ic), MR);
  float* Bp = tl_pack_b.get(static_cast<size_t>(kcb * ncb));
  for (int64_t jc = 0; jc < N; jc += ncb) {
    const int64_t nc = std::min(ncb, N - jc);
    const int64_t n_panels = ceil_div(nc, NR);
    // Column splits so that there are at least 2 tasks per thread when rows alone do not give them.
    int64_t split = 1;
    if (par) split = std::max<int64_t>(1, std::min(n_panels, ceil_div(2 * nt, n_ic)));
    const int64_t ntasks = n_ic * split;
    for (int64_t pc = 0; pc < K; pc += kcb) {
      const int64_t kc = std::min(kcb, K - pc);
      const bool accumulate = pc > 0;
      parallel_for(n_panels, par ? std::max<int64_t>(1, 16384 / (kc * NR)) : n_panels,
                   [&](int64_t p0, int64_t p1) { pack_b(B, pc, kc, jc, nc, p0, p1, Bp); });
      parallel_for(ntasks, par ? 1 : ntasks, [&](int64_t t0, int64_t t1) {
        float* Ap = tl_pack_a.get(static_cast<size_t>(mcb * kc));
        int64_t packed_ic = -1;
        for (int64_t t = t0; t < t1; t++) {
          const int64_t ic = (t / split) * mcb;
          const int64_t s = t % split;
          const int64_t mc = std::min(mcb, M - ic);
          if (ic != packed_ic) {
            pack_a(A, ic, mc, pc, kc, Ap);
            packed_ic = ic;
          }
          const int64_t jp0 = n_panels * s / split;
          const int64_t jp1 = n_panels * (s + 1) / split;
          for (int64_t jp = jp0; jp < jp1; jp++) {
            const int64_t nr = std::min(NR, nc - jp * NR);
            const float* bpan = Bp + jp * NR * kc;
            float* cbase = C + ic * ldc + jc + jp * NR;
            for (int64_t ip = 0; ip < mc; ip += MR) {
              micro_kernel(kc, Ap + ip * kc, bpan, cbase + ip * ldc, ldc, accumulate, std::min(MR, mc - ip), nr);
            }
          }
        }
      });
    }
  }
}

/** M ≤ 4 rows: no packing. Rows of op(A) are contiguous (gathered first when transA). */
void gemm_small_m(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B, bool transB,
                  float* C) {
  const float* rows = A;
  if (transA) {
    float* g = tl_rows.get(static_cast<size_t>(M * K));
    for (int64_t k = 0; k < K; k++) {
      for (int64_t i = 0; i < M; i++) g[i * K + k] = A[k * M + i];
    }
    rows = g;
  }
  const bool par = 2.0 * M * N * K >= 1.0e6;
  if (transB) {
    // C[i][j] = row_i · B_j (B stored (N, K)): each B row is read once for all M rows.
    parallel_for(N, par ? 16 : N, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; j++) {
        const float* bj = B + j * K;
        for (int64_t i = 0; i < M; i++) C[i * N + j] = dot_f32(rows + i * K, bj, K);
      }
    });
  } else {
    // C[i][j0:j1] = Σ_k row_i[k]·B[k][j0:j1] over a column strip that stays in L1.
    constexpr int64_t STRIP = 512;
    const int64_t nstrips = ceil_div(N, STRIP);
    parallel_for(nstrips, par ? 1 : nstrips, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; s++) {
        const int64_t j0 = s * STRIP;
        const int64_t w = std::min(STRIP, N - j0);
        for (int64_t i = 0; i < M; i++) std::memset(C + i * N + j0, 0, static_cast<size_t>(w) * sizeof(float));
        for (int64_t k = 0; k < K; k++) {
          const float* bk = B + k * N + j0;
          for (int64_t i = 0; i < M; i++) axpy(rows[i * K + k], bk, C + i * N + j0, w);
        }
      }
    });
  }
}

void gemm_one(int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B, bool transB, float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(C, 0, static_cast<size_t>(M * N) * sizeof(float));
    return;
  }
  if (M <= 4) {
    gemm_small_m(M, N, K, A, transA, B, transB, C);
    return;
  }
  const View va = transA ? View{A, 1, M} : View{A, K, 1};
  const View vb = transB ? View{B, 1, K} : View{B, N, 1};
  gemm_packed(M, N, K, va, vb, C, N);
}

}  // namespace

void sgemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,
                   bool transB, int64_t bStride, float* C) {
  if (batch <= 0 || M == 0 || N == 0) return;
  const int64_t aStride = M * K;
  const int64_t cStride = M * N;
  if (blas_active() && K > 0) {
    const BlasLib& lib = blas();
    MLA_CHECK(M < (int64_t{1} << 31) && N < (int64_t{1} << 31) && K < (int64_t{1} << 31),
              "matmul: dimension too large for 32-bit BLAS");
    for (int64_t p = 0; p < batch; p++) {
      lib.sgemm(kCblasRowMajor, transA ? kCblasTrans : kCblasNoTrans, transB ? kCblasTrans : kCblasNoTrans,
                static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, A + p * aStride,
                static_cast<int>(transA ? M : K), B + p * bStride, static_cast<int>(transB ? K : N), 0.0f,
                C + p * cStride, static_cast<int>(N));
    }
    return;
  }
  const double flops = 2.0 * M * N * K;
  if (batch > 1 && flops < 8.0e6) {
    // Many small products: one per task, each run serially by its thread.
    const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(2.0e5 / std::max(flops, 1.0)));
    parallel_for(batch, grain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) {
        gemm_one(M, N, K, A + p * aStride, transA, B + p * bStride, transB, C + p * cStride);
      }
    });
    return;
  }
  for (int64_t p = 0; p < batch; p++) {
    gemm_one(M, N, K, A + p * aStride, transA, B + p * bStride, transB, C + p * cStride);
  }
}

/** params [batch, M, N, K, transA, transB, bBatched]; arrays a (batch·M·K), b ((bBatched ? batch : 1)·K·N),
 *  c (batch·M·N) out. */
void op_matmul(const Call& c) {
  const int64_t batch = c.pi(0), M = c.pi(1), N = c.pi(2), K = c.pi(3);
  const bool transA = c.pi(4, 0, 1) != 0, transB = c.pi(5, 0, 1) != 0, bBatched = c.pi(6, 0, 1) != 0;
  const float* a = c.f32(0, static_cast<size_t>(batch * M * K));
  const float* b = c.f32(1, static_cast<size_t>((bBatched ? batch : 1) * K * N));
  float* out = c.f32(2, static_cast<size_t>(batch * M * N));
  sgemm_batched(batch, M, N, K, a, transA, b, transB, bBatched ? K * N : 0, out);
}

}  // namespace mla

// Kernels that read weights stored in 16 bits (bf16 or IEEE f16) with f32 accumulation: matmul with a half weight
// operand B and embedding from a half table. The weights are widened to f32 on the fly, a tile or a row at a time,
// so a model keeps its file dtype in memory (half the bytes of f32) and no f32 copy of a whole weight exists.
// Shape legend as in matmul.cpp: C (M, N) = op(A) (M, K) · op(B); B stored (K, N), or (N, K) when transB (the
// x·Wᵀ of a linear layer); A is f32 and never transposed here. Embedding: table (V, C), N = ids.length rows.
//   decode (M ≤ 4): each B row is widened in registers inside the dot product (bf16: a 16-bit shift; f16: F16C
//                   vcvtph2ps) — the weight is read once, at half the bytes, which is what bounds decode speed;
//   prefill/training (M > 4): column blocks of op(B) are widened into a scratch tile (≤ 32 MiB) and multiplied by
//                   sgemm_batched (OpenBLAS or the own packed kernel), so the f32 GEMM speed is kept.
// bf16 → f32 is exact (the top half of an f32); f16 → f32 is exact as well (subnormals, inf and NaN included).
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/** One IEEE half → f32, exact. */
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t e = (h >> 10) & 0x1f;
  const uint32_t m = h & 0x3ff;
  if (e == 0) {
    // Zero or subnormal: m·2^-24 is exact in f32.
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return bits_to_f32(sign | 0x7f800000u | (m << 13));
  return bits_to_f32(sign | ((e + 112) << 23) | (m << 13));
}

inline float half_to_f32(uint16_t h, bool bf16) {
  return bf16 ? bits_to_f32(static_cast<uint32_t>(h) << 16) : f16_to_f32(h);
}

#if MLA_AVX2
/** 8 halves → 8 floats. */
inline __m256 load8(const uint16_t* p, bool bf16) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#if defined(__F16C__)
  return _mm256_cvtph_ps(h);
#else
  alignas(32) float t[8];
  for (int i = 0; i < 8; i++) t[i] = f16_to_f32(p[i]);
  return _mm256_load_ps(t);
#endif
}
#endif

/** dst[i] = widen(src[i]) for i < n. */
void widen(const uint16_t* src, float* dst, int64_t n, bool bf16) {
  int64_t i = 0;
#if MLA_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(src + i, bf16));
#endif
  for (; i < n; i++) dst[i] = half_to_f32(src[i], bf16);
}

/** Σ x[i]·widen(y[i]) over i < n, f32 accumulation (four independent partial sums). */
float dot_half(const float* x, const uint16_t* y, int64_t n, bool bf16) {
  int64_t i = 0;
  float s = 0.0f;
#if MLA_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(y + i, bf16), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8(y + i + 8, bf16), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8(y + i + 16, bf16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8(y + i + 24, bf16), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(y + i, bf16), a0);
  s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
  for (; i < n; i++) s += x[i] * half_to_f32(y[i], bf16);
  return s;
}

thread_local Scratch<float> tl_tile;
thread_local Scratch<float> tl_ctile;
thread_local Scratch<float> tl_row;

/** Largest scratch tile of widened B, in floats (32 MiB). */
constexpr int64_t kTileFloats = int64_t{1} << 23;

/** C (M, N) = A (M, K) · op(B) for one matrix, B half. */
void gemm_half_one(int64_t M, int64_t N, int64_t K, const float* A, const uint16_t* B, bool transB, bool bf16,
                   float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(C, 0, static_cast<size_t>(M * N) * sizeof(float));
    return;
  }
  const bool par = 2.0 * M * N * K >= 1.0e6;
  if (M <= 4 && transB) {
    // Decode: C[i][j] = A_i · B_j with B_j (K halves) widened inside the dot product.
    parallel_for(N, par ? 16 : N, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; j++) {
        const uint16_t* bj = B + j * K;
        for (int64_t i = 0; i < M; i++) C[i * N + j] = dot_half(A + i * K, bj, K, bf16);
      }
    });
    return;
  }
  if (M <= 4) {
    // B stored (K, N): C[i][j0:j1] = Σ_k A[i][k]·widen(B[k][j0:j1]) over a strip that stays in L1.
    constexpr int64_t STRIP = 512;
    const int64_t nstrips = (N + STRIP - 1) / STRIP;
    parallel_for(nstrips, par ? 1 : nstrips, [&](int64_t s0, int64_t s1) {
      float* row = tl_row.get(STRIP);
      for (int64_t s = s0; s < s1; s++) {
        const int64_t j0 = s * STRIP;
        const int64_t w = std::min(STRIP, N - j0);
        for (int64_t i = 0; i < M; i++) std::memset(C + i * N + j0, 0, static_cast<size_t>(w) * sizeof(float));
        for (int64_t k = 0; k < K; k++) {
          widen(B + k * N + j0, row, w, bf16);
          for (int64_t i = 0; i < M; i++) axpy(A[i * K + k], row, C + i * N + j0, w);
        }
      }
    });
    return;
  }
  // Column blocks of op(B), widened into a tile, then an f32 GEMM per block.
  const int64_t nb = std::min(N, std::max<int64_t>(64, (kTileFloats / K) / 64 * 64));
  float* tile = tl_tile.get(static_cast<size_t>(nb * K));
  float* ctile = nb == N ? nullptr : tl_ctile.get(static_cast<size_t>(M * nb));
  for (int64_t j0 = 0; j0 < N; j0 += nb) {
    const int64_t w = std::min(nb, N - j0);
    if (transB) {
      // Rows j0..j0+w of B (N, K) are contiguous: the tile is (w, K), used with transB.
      parallel_for(w, std::max<int64_t>(1, 16384 / K), [&](int64_t r0, int64_t r1) {
        widen(B + (j0 + r0) * K, tile + r0 * K, (r1 - r0) * K, bf16);
      });
    } else {
      // Columns j0..j0+w of B (K, N): the tile is (K, w).
      parallel_for(K, std::max<int64_t>(1, 16384 / w), [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; k++) widen(B + k * N + j0, tile + k * w, w, bf16);
      });
    }
    float* dst = ctile ? ctile : C;
    sgemm_batched(1, M, w, K, A, false, tile, transB, 0, dst);
    if (ctile) {
      for (int64_t i = 0; i < M; i++) std::memcpy(C + i * N + j0, ctile + i * w, static_cast<size_t>(w) * sizeof(float));
    }
  }
}

}  // namespace

/** params [batch, M, N, K, transB, bBatched, bf16]; arrays a f32 (batch·M·K), b u16 ((bBatched ? batch : 1)·K·N),
 *  c f32 (batch·M·N) out. bf16 = 1 for bf16 storage, 0 for IEEE f16. */
void op_matmul_half(const Call& c) {
  const int64_t batch = c.pi(0), M = c.pi(1), N = c.pi(2), K = c.pi(3);
  const bool transB = c.pi(4, 0, 1) != 0, bBatched = c.pi(5, 0, 1) != 0, bf16 = c.pi(6, 0, 1) != 0;
  const float* a = c.f32(0, static_cast<size_t>(batch * M * K));
  const uint16_t* b = c.u16(1, static_cast<size_t>((bBatched ? batch : 1) * K * N));
  float* out = c.f32(2, static_cast<size_t>(batch * M * N));
  for (int64_t p = 0; p < batch; p++) {
    gemm_half_one(M, N, K, a + p * M * K, b + (bBatched ? p * K * N : 0), transB, bf16, out + p * M * N);
  }
}

/** params [V, C, N, bf16]; arrays table u16 (V·C), ids (N, i32), out f32 (N·C): out[n] = widen(table[ids[n]]). */
void op_embedding_half(const Call& c) {
  const int64_t V = c.pi(0), C = c.pi(1), N = c.pi(2);
  const bool bf16 = c.pi(3, 0, 1) != 0;
  const uint16_t* table = c.u16(0, static_cast<size_t>(V * C));
  const int32_t* ids = c.i32(1, static_cast<size_t>(N));
  float* out = c.f32(2, static_cast<size_t>(N * C));
  check_ids("embeddingHalf", ids, N, V);
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, 32768 / C), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) widen(table + static_cast<int64_t>(ids[n]) * C, out + n * C, C, bf16);
  });
}

}  // namespace mla

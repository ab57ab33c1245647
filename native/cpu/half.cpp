// Kernels that read weights stored in 16 bits (bf16 or IEEE f16) with f32 accumulation: matmul with a half weight
// operand B and embedding from a half table. The weights are widened to f32 on the fly, a tile or a row at a time,
// so a model keeps its file dtype in memory (half the bytes of f32) and no f32 copy of a whole weight exists.
// Shape legend as in matmul.cpp: C (M, N) = op(A) (M, K) · op(B); B stored (K, N), or (N, K) when transB (the
// x·Wᵀ of a linear layer); A is f32 and never transposed here. Embedding: table (V, C), N = ids.length rows.
//   decode (M ≤ 64, transB: x·Wᵀ): register-blocked dot products over whole weight rows, each weight row widened
//                   in registers once per block of up to 6 (AVX-512, 16 lanes) or 4 (AVX2, 8 lanes) rows of A, 4 or 3
//                   weight rows at a time: the weight is read once, at half the bytes, which is what bounds decode
//                   speed, and never written out as f32 (widening tiles for sgemm writes and rereads 2× the weight's
//                   bytes per call: a teacher sampling 32 sequences side by side spent most of each step there);
//   M ≤ 4 without transB: row updates over L1 strips;
//   prefill/training (M > 64, or M > 4 without transB): column blocks of op(B) are widened into a scratch tile
//                   (≤ 32 MiB) and multiplied by sgemm_batched (OpenBLAS or the own packed kernel), so the f32 GEMM speed is kept.
// bf16 → f32 is exact (the top half of an f32); f16 → f32 is exact as well (subnormals, inf and NaN included).
// AVX-512 (f, bw, vl) is chosen at run time (simd.cpp): these kernels exist in an AVX-512 variant compiled with
// target attributes, so one build runs on AVX2-only CPUs; MLA_SIMD=avx2 or setSimd('avx2') forces the AVX2 variant
// (the conformance suite runs both). Both accumulate in f32 lanes: the same tolerance against ref (1e-5) holds.
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "simd.h"
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

/** How far ahead of the weight rows being read the decode kernels prefetch (bytes of the contiguous row stream).
 *  The hardware prefetcher alone, following 3–4 short interleaved row streams (a K = 576 row is 18 lines), reached
 *  ~8 GB/s on the Xeon this was tuned on; 4 KiB ahead of the stream ~11–12 GB/s, near a plain streaming read. */
constexpr int64_t kPrefetchBytes = 4096;

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


#if MLA_X86
// GCC 12 reports its own _mm512_undefined_ps inside _mm512_reduce_add_ps as "may be used uninitialized" (a false
// positive of the intrinsic header); silenced for these kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// ---- AVX-512 variants (called only when simd_avx512() says the CPU has f/bw/vl and nobody forced AVX2) ----

/** 16 halves → 16 floats (the first n when n < 16: the rest read as zero, never touched in memory). */
template <bool BF16>
MLA_AVX512_FN inline __m512 load16(const uint16_t* p, int64_t n = 16) {
  const __m256i h = n >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                            : _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1), p);
  if (BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

MLA_AVX512_FN inline __m512 loadf16(const float* p, int64_t n = 16) {
  return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}

/** C[i0:i0+MR][j0:j0+nr] = MR rows of A · nr rows of B (K halves each), nr ≤ 4 (a short block repeats its last
 *  weight row and drops the copies). */
template <int MR, bool BF16>
MLA_AVX512_FN void rows_block_512(const float* A, const uint16_t* B, int64_t K, int64_t i0, int64_t j0, int64_t nr,
                                  float* C, int64_t N, const char* pf, const char* pf_end) {
  const float* a[MR];
  const uint16_t* b[4];
  for (int r = 0; r < MR; r++) a[r] = A + (i0 + r) * K;
  for (int c = 0; c < 4; c++) b[c] = B + (j0 + std::min<int64_t>(c, nr - 1)) * K;
  __m512 acc[MR][4];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
  }
  const auto step = [&](int64_t k, int64_t n) MLA_AVX512_LAMBDA {
    // 4 rows × 16 halves = 128 bytes of weight per step: two lines of the stream kPrefetchBytes ahead.
    const char* p = pf + 8 * k;
    if (p < pf_end) {
      _mm_prefetch(p, _MM_HINT_T0);
      _mm_prefetch(p + 64, _MM_HINT_T0);
    }
    __m512 bv[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) bv[c] = load16<BF16>(b[c] + k, n);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const __m512 av = loadf16(a[r] + k, n);
#pragma GCC unroll 4
      for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
    }
  };
  const int64_t K16 = K / 16 * 16;
  for (int64_t k = 0; k < K16; k += 16) step(k, 16);  // unmasked: the constant 16 folds the masks away
  if (K16 < K) step(K16, K - K16);
  for (int64_t r = 0; r < MR; r++) {
    for (int64_t c = 0; c < nr; c++) C[(i0 + r) * N + j0 + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

template <bool BF16>
MLA_AVX512_FN void rows_chunk_512(const float* A, const uint16_t* B, int64_t M, int64_t K, int64_t j0, int64_t j1,
                                  float* C, int64_t N) {
  // Weight rows j0..j1 are one contiguous stream; only the first pass over a block (i = 0) prefetches (later blocks
  // of A rows find it in cache), and never past this chunk's end (another thread's rows).
  const char* end = reinterpret_cast<const char*>(B + j1 * K);
  for (int64_t j = j0; j < j1; j += 4) {
    const int64_t nr = std::min<int64_t>(4, j1 - j);
    const char* pf = reinterpret_cast<const char*>(B + j * K) + kPrefetchBytes;
    const char* none = pf;  // pf_end ≤ pf: no prefetch
    int64_t i = 0;
    for (; i + 6 <= M; i += 6) rows_block_512<6, BF16>(A, B, K, i, j, nr, C, N, pf, i == 0 ? end : none);
    const char* pe = i == 0 ? end : none;
    switch (M - i) {
      case 5: rows_block_512<5, BF16>(A, B, K, i, j, nr, C, N, pf, pe); break;
      case 4: rows_block_512<4, BF16>(A, B, K, i, j, nr, C, N, pf, pe); break;
      case 3: rows_block_512<3, BF16>(A, B, K, i, j, nr, C, N, pf, pe); break;
      case 2: rows_block_512<2, BF16>(A, B, K, i, j, nr, C, N, pf, pe); break;
      case 1: rows_block_512<1, BF16>(A, B, K, i, j, nr, C, N, pf, pe); break;
      default: break;
    }
  }
}
#pragma GCC diagnostic pop
#endif

#if MLA_AVX2
/** C[i0:i0+MR][j0:j0+nr] = MR rows of A · nr rows of B, MR ≤ 4, nr ≤ 3 (≤ 12 ymm accumulators); the K tail (< 8)
 *  in scalar. */
template <int MR>
void rows_block_avx2(const float* A, const uint16_t* B, int64_t K, int64_t i0, int64_t j0, int64_t nr, bool bf16,
                     float* C, int64_t N, const char* pf, const char* pf_end) {
  const float* a[MR];
  const uint16_t* b[3];
  for (int r = 0; r < MR; r++) a[r] = A + (i0 + r) * K;
  for (int c = 0; c < 3; c++) b[c] = B + (j0 + std::min<int64_t>(c, nr - 1)) * K;
  __m256 acc[MR][3];
#pragma GCC unroll 4
  for (int r = 0; r < MR; r++) {
#pragma GCC unroll 3
    for (int c = 0; c < 3; c++) acc[r][c] = _mm256_setzero_ps();
  }
  const int64_t K8 = K / 8 * 8;
  for (int64_t k = 0; k < K8; k += 8) {
    // 3 rows × 8 halves = 48 bytes per step: one line per step keeps ahead of the stream (every line is reached).
    const char* p = pf + 6 * k;
    if (p < pf_end) _mm_prefetch(p, _MM_HINT_T0);
    __m256 bv[3];
#pragma GCC unroll 3
    for (int c = 0; c < 3; c++) bv[c] = load8(b[c] + k, bf16);
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
      const __m256 av = _mm256_loadu_ps(a[r] + k);
#pragma GCC unroll 3
      for (int c = 0; c < 3; c++) acc[r][c] = _mm256_fmadd_ps(av, bv[c], acc[r][c]);
    }
  }
  for (int64_t r = 0; r < MR; r++) {
    for (int64_t c = 0; c < nr; c++) {
      float s = hsum256(acc[r][c]);
      for (int64_t k = K8; k < K; k++) s += a[r][k] * half_to_f32(b[c][k], bf16);
      C[(i0 + r) * N + j0 + c] = s;
    }
  }
}
#endif

/** C (M, N) = A (M, K) · Bᵀ with B (N, K) half, for a few rows of A (a decode batch): weight rows read once each.
 *  The rows are cut into tasks of about kTaskBytes of weight, taken dynamically by the pool's threads: a thread
 *  that starts late (woken from sleep, or descheduled on a busy machine) finds the others have taken its share
 *  instead of holding up the op; a weight under two tasks' worth runs on the calling thread alone. Each output
 *  element is computed by the same code whichever thread runs it, so results do not depend on the thread count. */
void gemm_half_rows(int64_t M, int64_t N, int64_t K, const float* A, const uint16_t* B, bool bf16, float* C) {
  constexpr int64_t CHUNK = 12;  // weight rows per task unit: a multiple of both blockings (4 and 3)
  constexpr int64_t kTaskBytes = 64 * 1024;
  const int64_t nchunks = (N + CHUNK - 1) / CHUNK;
  const int64_t chunkBytes = CHUNK * K * 2 * std::max<int64_t>(1, M / 4);  // more rows of A: more work per byte
  const int64_t per = std::max<int64_t>(1, kTaskBytes / std::max<int64_t>(chunkBytes, 1));
  const int64_t ntasks = (nchunks + per - 1) / per;
  const auto rows = [&](int64_t t, auto&& chunk) {
    const int64_t j0 = t * per * CHUNK, j1 = std::min(N, (t + 1) * per * CHUNK);
    chunk(j0, j1);
  };
#if MLA_X86
  if (simd_avx512()) {
    const auto run = [&](int64_t j0, int64_t j1) {
      if (bf16) rows_chunk_512<true>(A, B, M, K, j0, j1, C, N);
      else rows_chunk_512<false>(A, B, M, K, j0, j1, C, N);
    };
    if (ntasks < 2) run(0, N);
    else parallel_tasks(ntasks, [&](int64_t t) { rows(t, run); });
    return;
  }
#endif
  const auto run = [&](int64_t j0, int64_t j1) {
#if MLA_AVX2
    const char* end = reinterpret_cast<const char*>(B + j1 * K);
    for (int64_t j = j0; j < j1; j += 3) {
      const int64_t nr = std::min<int64_t>(3, j1 - j);
      const char* pf = reinterpret_cast<const char*>(B + j * K) + kPrefetchBytes;
      int64_t i = 0;
      for (; i + 4 <= M; i += 4) rows_block_avx2<4>(A, B, K, i, j, nr, bf16, C, N, pf, i == 0 ? end : pf);
      const char* pe = i == 0 ? end : pf;
      switch (M - i) {
        case 3: rows_block_avx2<3>(A, B, K, i, j, nr, bf16, C, N, pf, pe); break;
        case 2: rows_block_avx2<2>(A, B, K, i, j, nr, bf16, C, N, pf, pe); break;
        case 1: rows_block_avx2<1>(A, B, K, i, j, nr, bf16, C, N, pf, pe); break;
        default: break;
      }
    }
#else
    for (int64_t j = j0; j < j1; j++) {
      for (int64_t i = 0; i < M; i++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++) acc += A[i * K + k] * half_to_f32(B[j * K + k], bf16);
        C[i * N + j] = acc;
      }
    }
#endif
  };
  if (ntasks < 2) run(0, N);
  else parallel_tasks(ntasks, [&](int64_t t) { rows(t, run); });
}

thread_local Scratch<float> tl_tile;
thread_local Scratch<float> tl_ctile;
thread_local Scratch<float> tl_row;

/** Rows of A up to which x·Wᵀ reads W row by row (gemm_half_rows) instead of widening tiles for sgemm: below it the
 *  product is bound by reading the weight, above it by arithmetic, where the packed GEMMs win. */
constexpr int64_t kRowsMax = 64;

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
  if (M <= kRowsMax && transB) {
    gemm_half_rows(M, N, K, A, B, bf16, C);
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

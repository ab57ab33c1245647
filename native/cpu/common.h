// Shared helpers of the cpu kernels: the error type (becomes a thrown JS Error in addon.cpp), thread-local aligned
// scratch buffers, and the few SIMD primitives several op families use (vector exp, double-accumulated sums).
// Kernels are compiled with -march=native: the AVX2/FMA paths are used where the build machine has them and a plain
// loop otherwise; results agree with the float64 reference to the tolerances stated in test/conformance.test.ts.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MLA_AVX2 1
#else
#define MLA_AVX2 0
#endif

namespace mla {

/** A failure the caller can understand (bad argument, missing library); addon.cpp turns it into a JS Error. */
struct Error : std::runtime_error {
  explicit Error(const std::string& m) : std::runtime_error(m) {}
};

#define MLA_CHECK(cond, msg)                                                                              \
  do {                                                                                                    \
    if (!(cond)) throw ::mla::Error(std::string(msg) + " (" __FILE__ ":" + std::to_string(__LINE__) + ")"); \
  } while (0)

/** Every token id in [0, V): the embedding kernels (and their backward) index rows with them. */
inline void check_ids(const char* op, const int32_t* ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++) {
    MLA_CHECK(ids[n] >= 0 && ids[n] < V, std::string(op) + ": id " + std::to_string(ids[n]) + " at " + std::to_string(n) +
                                             " outside [0, " + std::to_string(V) + ")");
  }
}

/** A 64-byte aligned float buffer that grows on demand (one per thread where it is thread_local). */
template <class T>
struct Scratch {
  T* p = nullptr;
  size_t cap = 0;
  T* get(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
      p = static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
      if (!p) {
        cap = 0;
        throw std::bad_alloc();
      }
      cap = n;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};

#if MLA_AVX2
/** e^x for 8 floats: Cephes-style range reduction x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial (≈1 ulp);
 *  exp(−∞) = 0, below −87.3 flushes to 0, above 88.7 gives +∞, NaN stays NaN. */
static inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.7228391f);
  const __m256 lo = _mm256_set1_ps(-87.3365447f);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n ≤ 128 after the clamp; scale by 2^n in two steps so n = 128 does not overflow the exponent field.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1);
  __m256i n2 = _mm256_sub_epi32(ni, n1);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
  y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return y;
}

static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline double hsum256d(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

/** Lanes [0, n) set, n in [0, 8]: the mask for partial loads and stores. */
static inline __m256i tail_mask(int64_t n) {
  alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
}
#endif

/** Scalar e^x matching exp256 closely enough for tails (std::exp is correctly rounded to within 1 ulp). */
static inline float expf_scalar(float x) { return std::exp(x); }

/** y[i] = e^(x[i]·a − b) for i < n (a softmax numerator); returns Σ y in double. x and y may alias. */
static inline double exp_shift_sum(const float* x, float* y, int64_t n, float a, float b) {
  double total = 0.0;
  int64_t i = 0;
#if MLA_AVX2
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), va, vb));
    if (y) _mm256_storeu_ps(y + i, e);
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  if (i < n) {
    __m256i m = tail_mask(n - i);
    __m256 e = exp256(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, m), va, vb));
    e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
    if (y) _mm256_maskstore_ps(y + i, m, e);
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    i = n;
  }
  total = hsum256d(_mm256_add_pd(acc0, acc1));
#endif
  for (; i < n; i++) {
    float e = expf_scalar(x[i] * a - b);
    if (y) y[i] = e;
    total += e;
  }
  return total;
}

/** max_i x[i]·a over i < n (a > 0), −∞ for n = 0. NaN entries are skipped (max_ps and `>` ignore them); callers
 *  that shift by it (softmax, log-sum-exp) still get NaN, because exp(NaN − m) = NaN enters their sum. */
static inline float scaled_max(const float* x, int64_t n, float a) {
  float m = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#if MLA_AVX2
  __m256 vm = _mm256_set1_ps(m);
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  alignas(32) float t[8];
  _mm256_store_ps(t, vm);
  for (float v : t) m = v > m ? v : m;
#endif
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m * a;
}

/** Σ x[i]² over i < n, accumulated in double. */
static inline double sum_squares_f64(const float* x, int64_t n) {
  int64_t i = 0;
  double s = 0.0;
#if MLA_AVX2
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    __m256d x1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    __m256d x2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8));
    __m256d x3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
    a0 = _mm256_fmadd_pd(x0, x0, a0);
    a1 = _mm256_fmadd_pd(x1, x1, a1);
    a2 = _mm256_fmadd_pd(x2, x2, a2);
    a3 = _mm256_fmadd_pd(x3, x3, a3);
  }
  s = hsum256d(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
#endif
  for (; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return s;
}

/** Σ x[i]·y[i] over i < n, accumulated in double. */
static inline double dot_f64(const float* x, const float* y, int64_t n) {
  int64_t i = 0;
  double s = 0.0;
#if MLA_AVX2
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), _mm256_cvtps_pd(_mm_loadu_ps(y + i)), a0);
    a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(y + i + 4)), a1);
  }
  s = hsum256d(_mm256_add_pd(a0, a1));
#endif
  for (; i < n; i++) s += static_cast<double>(x[i]) * y[i];
  return s;
}

/** Σ x[i]·y[i] over i < n in float (short dot products: head dims). */
static inline float dot_f32(const float* x, const float* y, int64_t n) {
  int64_t i = 0;
  float s = 0.0f;
#if MLA_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
  }
  if (i + 8 <= n) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    i += 8;
  }
  s = hsum256(_mm256_add_ps(a0, a1));
#endif
  for (; i < n; i++) s += x[i] * y[i];
  return s;
}

/** y[i] += a·x[i] for i < n. */
static inline void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if MLA_AVX2
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; i++) y[i] += a * x[i];
}

/** y[i] *= a for i < n. */
static inline void scale_inplace(float a, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] *= a;
}

}  // namespace mla

// Losses: cross-entropy against token targets and forward KL divergence against a teacher, per row.
// Shape legend: N rows (B·T), V vocabulary.
// Stable: log-sum-exp shifted by the row max, exponentials in float (exp256), their sums and the per-row loss in
// double. Reductions over rows belong to the caller, which passes dloss (N) to the backward. Backward kernels write
// fresh gradients (nothing accumulates in place).
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

thread_local Scratch<float> tl_row;

int64_t row_grain(int64_t V) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(V, 1)); }

/** log Σ_v exp(x[v]·inv) over one row; e (optional) receives exp(x[v]·inv − max) and *sum its double sum. */
double log_sum_exp(const float* x, int64_t V, float inv, float* e, double* sum) {
  const float mx = scaled_max(x, V, inv);
  const double s = exp_shift_sum(x, e, V, inv, mx);
  if (sum) *sum = s;
  return static_cast<double>(mx) + std::log(s);
}

/** Σ_v e[v]·((t[v] − s[v])·inv − c) in double (the KL numerator; e are the teacher's shifted exponentials). */
double kl_sum(const float* e, const float* t, const float* s, int64_t V, double inv, double c) {
  int64_t v = 0;
  double total = 0.0;
#if MLA_AVX2
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  const __m256d vi = _mm256_set1_pd(inv), vc = _mm256_set1_pd(c);
  for (; v + 8 <= V; v += 8) {
    const __m256 ev = _mm256_loadu_ps(e + v), tv = _mm256_loadu_ps(t + v), sv = _mm256_loadu_ps(s + v);
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(tv)), _mm256_cvtps_pd(_mm256_castps256_ps128(sv)));
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(tv, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(sv, 1)));
    acc0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(ev)), _mm256_fmsub_pd(d0, vi, vc), acc0);
    acc1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)), _mm256_fmsub_pd(d1, vi, vc), acc1);
  }
  total = hsum256d(_mm256_add_pd(acc0, acc1));
#endif
  for (; v < V; v++) total += static_cast<double>(e[v]) * ((static_cast<double>(t[v]) - s[v]) * inv - c);
  return total;
}

}  // namespace

/** params [N, V]; arrays logits (N·V), targets (N, i32), loss (N) out:
 *  loss[n] = log Σ_v exp(logits[n,v]) − logits[n, targets[n]], 0 where targets[n] < 0. */
void op_cross_entropy(const Call& c) {
  const int64_t N = c.pi(0), V = c.pi(1);
  const float* L = c.f32(0, static_cast<size_t>(N * V));
  const int32_t* tg = c.i32(1, static_cast<size_t>(N));
  float* out = c.f32(2, static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) MLA_CHECK(tg[n] < V, "crossEntropy: target " + std::to_string(tg[n]) + " ≥ V");
  parallel_for(N, row_grain(V), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      if (tg[n] < 0) {
        out[n] = 0.0f;
        continue;
      }
      const float* row = L + n * V;
      out[n] = static_cast<float>(log_sum_exp(row, V, 1.0f, nullptr, nullptr) - row[tg[n]]);
    }
  });
}

/** params [N, V]; arrays logits (N·V), dloss (N), targets (N, i32), dlogits (N·V) out:
 *  dlogits[n] = dloss[n]·(softmax(logits[n]) − onehot(targets[n])), 0 on ignored rows. */
void op_cross_entropy_backward(const Call& c) {
  const int64_t N = c.pi(0), V = c.pi(1);
  const float* L = c.f32(0, static_cast<size_t>(N * V));
  const float* dl = c.f32(1, static_cast<size_t>(N));
  const int32_t* tg = c.i32(2, static_cast<size_t>(N));
  float* out = c.f32(3, static_cast<size_t>(N * V));
  for (int64_t n = 0; n < N; n++) {
    MLA_CHECK(tg[n] < V, "crossEntropyBackward: target " + std::to_string(tg[n]) + " ≥ V");
  }
  parallel_for(N, row_grain(V), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      float* g = out + n * V;
      if (tg[n] < 0) {
        std::fill(g, g + V, 0.0f);
        continue;
      }
      double sum = 0.0;
      log_sum_exp(L + n * V, V, 1.0f, g, &sum);
      const float k = static_cast<float>(dl[n] / sum);
      for (int64_t v = 0; v < V; v++) g[v] *= k;
      g[tg[n]] -= dl[n];
    }
  });
}

/** params [N, V, τ]; arrays student (N·V), teacher (N·V), loss (N) out:
 *  loss[n] = Σ_v p_t·(log p_t − log p_s), p = softmax(logits/τ), computed as
 *  (1/Z_t)·Σ_v e_t,v·((t_v − s_v)/τ − (lse_t − lse_s)) with the log-ratio in double (no log of an underflowed p). */
void op_kl_div(const Call& c) {
  const int64_t N = c.pi(0), V = c.pi(1);
  const double tau = c.p(2);
  MLA_CHECK(tau > 0.0, "klDiv: temperature must be > 0");
  const float* Sd = c.f32(0, static_cast<size_t>(N * V));
  const float* Td = c.f32(1, static_cast<size_t>(N * V));
  float* out = c.f32(2, static_cast<size_t>(N));
  const double inv = 1.0 / tau;
  parallel_for(N, row_grain(V), [&](int64_t n0, int64_t n1) {
    float* e = tl_row.get(static_cast<size_t>(std::max<int64_t>(V, 1)));
    for (int64_t n = n0; n < n1; n++) {
      const float* s = Sd + n * V;
      const float* t = Td + n * V;
      const double lseS = log_sum_exp(s, V, static_cast<float>(inv), nullptr, nullptr);
      double zt = 0.0;
      const double lseT = log_sum_exp(t, V, static_cast<float>(inv), e, &zt);
      out[n] = static_cast<float>(kl_sum(e, t, s, V, inv, lseT - lseS) / zt);
    }
  });
}

/** params [N, V, τ]; arrays student, teacher (N·V), dloss (N), dstudent (N·V) out:
 *  dstudent[n] = dloss[n]·(p_s − p_t)/τ. */
void op_kl_div_backward(const Call& c) {
  const int64_t N = c.pi(0), V = c.pi(1);
  const double tau = c.p(2);
  MLA_CHECK(tau > 0.0, "klDivBackward: temperature must be > 0");
  const float* Sd = c.f32(0, static_cast<size_t>(N * V));
  const float* Td = c.f32(1, static_cast<size_t>(N * V));
  const float* dl = c.f32(2, static_cast<size_t>(N));
  float* out = c.f32(3, static_cast<size_t>(N * V));
  const double inv = 1.0 / tau;
  parallel_for(N, row_grain(V), [&](int64_t n0, int64_t n1) {
    float* e = tl_row.get(static_cast<size_t>(std::max<int64_t>(V, 1)));
    for (int64_t n = n0; n < n1; n++) {
      float* g = out + n * V;
      double zs = 0.0, zt = 0.0;
      log_sum_exp(Sd + n * V, V, static_cast<float>(inv), g, &zs);
      log_sum_exp(Td + n * V, V, static_cast<float>(inv), e, &zt);
      // k·(p_s − p_t) with the difference taken first, as the reference does: an infinite dloss then gives ±∞
      // (the sign of p_s − p_t), not ∞ − ∞ = NaN.
      const float k = static_cast<float>(dl[n] * inv);
      const float is = static_cast<float>(1.0 / zs), it = static_cast<float>(1.0 / zt);
      for (int64_t v = 0; v < V; v++) g[v] = k * (g[v] * is - e[v] * it);
    }
  });
}

}  // namespace mla

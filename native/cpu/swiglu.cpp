// SwiGLU gate, forward and backward: y = silu(g)·u, the nonlinearity of Llama-style MLPs.
// Shape legend: any shape "…" (in practice (N, F)); g, u and dy share it. Gradients overwrite fresh outputs.
// σ(x) = 1/(1 + e^−x): for x → −∞, e^−x → +∞ and σ → 0 exactly (never NaN).
#include <algorithm>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

constexpr int64_t kGrain = 16384;
constexpr int64_t kBlock = 256;

/** s[i] = σ(g[i]) for i < n. */
inline void sigmoid_block(const float* g, float* s, int64_t n) {
  exp_shift_sum(g, s, n, -1.0f, 0.0f);  // e^(−g)
  for (int64_t i = 0; i < n; i++) s[i] = 1.0f / (1.0f + s[i]);
}

}  // namespace

/** params []; arrays g, u, y (same size): y = g·σ(g)·u. */
void op_swiglu(const Call& c) {
  const size_t n = c.len(0);
  const float* g = c.f32(0, n);
  const float* u = c.f32(1, n);
  float* y = c.f32(2, n);
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t i0, int64_t i1) {
    alignas(32) float s[kBlock];
    for (int64_t b = i0; b < i1; b += kBlock) {
      const int64_t m = std::min(kBlock, i1 - b);
      sigmoid_block(g + b, s, m);
      for (int64_t i = 0; i < m; i++) y[b + i] = g[b + i] * s[i] * u[b + i];
    }
  });
}

/** params []; arrays dy, g, u, dg out, du out: dg = dy·u·σ(g)·(1 + g·(1 − σ(g))), du = dy·g·σ(g). */
void op_swiglu_backward(const Call& c) {
  const size_t n = c.len(0);
  const float* dy = c.f32(0, n);
  const float* g = c.f32(1, n);
  const float* u = c.f32(2, n);
  float* dg = c.f32(3, n);
  float* du = c.f32(4, n);
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t i0, int64_t i1) {
    alignas(32) float s[kBlock];
    for (int64_t b = i0; b < i1; b += kBlock) {
      const int64_t m = std::min(kBlock, i1 - b);
      sigmoid_block(g + b, s, m);
      for (int64_t i = 0; i < m; i++) {
        const float x = g[b + i], si = s[i], d = dy[b + i];
        dg[b + i] = d * u[b + i] * si * (1.0f + x * (1.0f - si));
        du[b + i] = d * x * si;
      }
    }
  });
}

}  // namespace mla

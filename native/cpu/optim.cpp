// AdamW optimiser step, in place on the parameter and its two moment buffers (torch.optim.AdamW semantics).
// Shape legend: any shape "…"; param, grad, m and v share it. Each element is updated in double and rounded once.
#include <cmath>

#include "ops.h"
#include "threadpool.h"

namespace mla {

/** params [lr, beta1, beta2, eps, weightDecay, step]; arrays param, grad, m, v (in place). With t = step:
 *    p ← p·(1 − lr·wd);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + eps). */
void op_adamw(const Call& c) {
  const double lr = c.p(0), b1 = c.p(1), b2 = c.p(2), eps = c.p(3), wd = c.p(4);
  const double step = static_cast<double>(c.pi(5, 1));
  const size_t n = c.len(0);
  float* P = c.f32(0, n);
  const float* G = c.f32(1, n);
  float* M = c.f32(2, n);
  float* Vv = c.f32(3, n);
  const double bc1 = 1.0 - std::pow(b1, step);
  const double bc2 = 1.0 - std::pow(b2, step);
  const double decay = 1.0 - lr * wd;
  const double stepSize = lr / bc1;
  const double invSqrtBc2 = 1.0 / std::sqrt(bc2);
  parallel_for(static_cast<int64_t>(n), 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const double g = G[i];
      const double m = b1 * M[i] + (1.0 - b1) * g;
      const double v = b2 * Vv[i] + (1.0 - b2) * g * g;
      M[i] = static_cast<float>(m);
      Vv[i] = static_cast<float>(v);
      P[i] = static_cast<float>(P[i] * decay - stepSize * m / (std::sqrt(v) * invSqrtBc2 + eps));
    }
  });
}

}  // namespace mla

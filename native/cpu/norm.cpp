// RMSNorm, forward and backward.
// Shape legend: N rows (leading axes flattened: B·T), C model width.
// The forward returns rstd (N) for the backward. The backward writes fresh gradients (dx, dw overwrite; nothing
// accumulates into existing buffers). Row statistics and the dw column sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {

/** params [N, C, eps]; arrays x (N·C), w (C), y (N·C) out, rstd (N) out.
 *  rstd[n] = 1/√(mean_c x[n,c]² + eps),  y[n,c] = x[n,c]·rstd[n]·w[c]. */
void op_rmsnorm(const Call& c) {
  const int64_t N = c.pi(0), C = c.pi(1);
  const double eps = c.p(2);
  const float* x = c.f32(0, static_cast<size_t>(N * C));
  const float* w = c.f32(1, static_cast<size_t>(C));
  float* y = c.f32(2, static_cast<size_t>(N * C));
  float* rstd = c.f32(3, static_cast<size_t>(N));
  parallel_for(N, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const float* xr = x + n * C;
      float* yr = y + n * C;
      const double r = 1.0 / std::sqrt(sum_squares_f64(xr, C) / static_cast<double>(C) + eps);
      const float rf = static_cast<float>(r);
      rstd[n] = rf;
      for (int64_t i = 0; i < C; i++) yr[i] = xr[i] * rf * w[i];
    }
  });
}

/** params [N, C]; arrays dy (N·C), x (N·C), w (C), rstd (N), dx (N·C) out, dw (C) out.
 *  With r = rstd[n], x̂ = x·r: dx = r·(w·dy − x̂·(1/C)·Σ_k dy_k·w_k·x̂_k),  dw[c] = Σ_n dy[n,c]·x̂[n,c]. */
void op_rmsnorm_backward(const Call& c) {
  const int64_t N = c.pi(0), C = c.pi(1);
  const float* dy = c.f32(0, static_cast<size_t>(N * C));
  const float* x = c.f32(1, static_cast<size_t>(N * C));
  const float* w = c.f32(2, static_cast<size_t>(C));
  const float* rstd = c.f32(3, static_cast<size_t>(N));
  float* dx = c.f32(4, static_cast<size_t>(N * C));
  float* dw = c.f32(5, static_cast<size_t>(C));
  if (C == 0) return;
  const int64_t grain = std::max<int64_t>(1, 16384 / C);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(num_threads(), (N + grain - 1) / grain));
  // One dw partial per row range, added in a fixed order.
  std::vector<double> parts(static_cast<size_t>(nt * C), 0.0);
  parallel_for(nt, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> dyw(static_cast<size_t>(C)), xh(static_cast<size_t>(C));
    for (int64_t t = t0; t < t1; t++) {
      double* acc = parts.data() + t * C;
      for (int64_t n = N * t / nt, e = N * (t + 1) / nt; n < e; n++) {
        const float* dyr = dy + n * C;
        const float* xr = x + n * C;
        float* dxr = dx + n * C;
        const float rf = rstd[n];
        // x̂ = x·r is formed first, as the reference does, so an infinite r or x gives the same ±∞/NaN pattern
        // (r²·Σ dy·w·x would turn a NaN from ∞ − ∞ inside the sum into ±∞).
        for (int64_t i = 0; i < C; i++) {
          dyw[i] = dyr[i] * w[i];
          xh[i] = xr[i] * rf;
        }
        // mean = (1/C)·Σ dy·w·x̂
        const float mean = static_cast<float>(dot_f64(dyw.data(), xh.data(), C) / static_cast<double>(C));
        for (int64_t i = 0; i < C; i++) dxr[i] = rf * (dyw[i] - xh[i] * mean);
        for (int64_t i = 0; i < C; i++) acc[i] += static_cast<double>(dyr[i]) * xh[i];
      }
    }
  });
  for (int64_t i = 0; i < C; i++) {
    double s = 0.0;
    for (int64_t t = 0; t < nt; t++) s += parts[t * C + i];
    dw[i] = static_cast<float>(s);
  }
}

}  // namespace mla

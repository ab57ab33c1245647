// Rotary position embedding. Its backward is itself with inverse = true (a rotation's adjoint is its inverse).
// Shape legend: B batch, T positions, H heads, D head dim, P = invFreq.length rotated pairs (2P columns from start).
// Pairings: 'half' rotates (start+j, start+P+j), 'adjacent' rotates (start+2j, start+2j+1); pair j uses invFreq[j].
// Writes a fresh output; columns outside the rotated slice are copied unchanged. Angles and their cos/sin are
// computed in double, the rotation in float.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {

/** params [B, T, H, D, start, P, pairing (0 half, 1 adjacent), inverse]; arrays x (B·T·H·D), invFreq (P, f64),
 *  positions (T, i32), out (B·T·H·D). θ = ±positions[t]·invFreq[j]: y₁ = x₁cos θ − x₂sin θ, y₂ = x₁sin θ + x₂cos θ. */
void op_rope(const Call& c) {
  const int64_t B = c.pi(0), T = c.pi(1), H = c.pi(2), D = c.pi(3), start = c.pi(4), P = c.pi(5);
  const bool adjacent = c.pi(6, 0, 1) != 0;
  const double sign = c.pi(7, 0, 1) != 0 ? -1.0 : 1.0;
  MLA_CHECK(start + 2 * P <= D, "rope: start + 2·invFreq.length exceeds the head dim");
  const size_t n = static_cast<size_t>(B * T * H * D);
  const float* x = c.f32(0, n);
  const double* invFreq = c.f64(1, static_cast<size_t>(P));
  const int32_t* pos = c.i32(2, static_cast<size_t>(T));
  float* out = c.f32(3, n);
  std::vector<float> cs(static_cast<size_t>(T * P)), sn(static_cast<size_t>(T * P));
  parallel_for(T, std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      for (int64_t j = 0; j < P; j++) {
        const double th = sign * static_cast<double>(pos[t]) * invFreq[j];
        cs[t * P + j] = static_cast<float>(std::cos(th));
        sn[t * P + j] = static_cast<float>(std::sin(th));
      }
    }
  });
  const int64_t rows = B * T * H;
  parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t t = (r / H) % T;
      const float* xr = x + r * D;
      float* yr = out + r * D;
      const float* cr = cs.data() + t * P;
      const float* sr = sn.data() + t * P;
      std::memcpy(yr, xr, static_cast<size_t>(D) * sizeof(float));
      const float* xs = xr + start;
      float* ys = yr + start;
      if (adjacent) {
        for (int64_t j = 0; j < P; j++) {
          const float x1 = xs[2 * j], x2 = xs[2 * j + 1];
          ys[2 * j] = x1 * cr[j] - x2 * sr[j];
          ys[2 * j + 1] = x1 * sr[j] + x2 * cr[j];
        }
      } else {
        for (int64_t j = 0; j < P; j++) {
          const float x1 = xs[j], x2 = xs[P + j];
          ys[j] = x1 * cr[j] - x2 * sr[j];
          ys[P + j] = x1 * sr[j] + x2 * cr[j];
        }
      }
    }
  });
}

}  // namespace mla

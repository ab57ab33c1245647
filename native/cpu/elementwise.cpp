// Elementwise ops: add, sub, mul with numpy broadcasting; affine; sumTo (the adjoint of broadcasting); sumSquares.
// Shapes are arbitrary ("…"). Broadcasting arrives as strides per output axis (0 on broadcast axes), computed in
// TypeScript; adjacent axes that walk memory the same way are merged here so the inner loop is long and has
// strides 0 or 1. Backward rules are compositions of these ops (no extra kernels); every op writes a fresh output.
// Sums accumulate in double.
#include <algorithm>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

constexpr int64_t kGrain = 32768;  // elements per thread below which a loop stays serial

struct Dims {
  std::vector<int64_t> shape;
  std::vector<int64_t> sa;
  std::vector<int64_t> sb;
};

/** Drops size-1 axes and merges neighbours whose strides chain (s[i] = s[i+1]·shape[i+1] for both operands). */
Dims collapse(const std::vector<int64_t>& shape, const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) {
  Dims d;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 1) continue;
    if (!d.shape.empty()) {
      const size_t l = d.shape.size() - 1;
      if (d.sa[l] == sa[i] * shape[i] && d.sb[l] == sb[i] * shape[i]) {
        d.shape[l] *= shape[i];
        d.sa[l] = sa[i];
        d.sb[l] = sb[i];
        continue;
      }
    }
    d.shape.push_back(shape[i]);
    d.sa.push_back(sa[i]);
    d.sb.push_back(sb[i]);
  }
  if (d.shape.empty()) {
    d.shape.push_back(1);
    d.sa.push_back(0);
    d.sb.push_back(0);
  }
  return d;
}

template <int KIND>
inline float apply(float x, float y) {
  if constexpr (KIND == 0) return x + y;
  if constexpr (KIND == 1) return x - y;
  return x * y;
}

template <int KIND>
void inner(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = apply<KIND>(a[i], b[i]);
  } else if (sa == 1) {
    const float y = b[0];
    for (int64_t i = 0; i < n; i++) o[i] = apply<KIND>(a[i], y);
  } else if (sb == 1) {
    const float x = a[0];
    for (int64_t i = 0; i < n; i++) o[i] = apply<KIND>(x, b[i]);
  } else {
    const float v = apply<KIND>(a[0], b[0]);
    for (int64_t i = 0; i < n; i++) o[i] = v;
  }
}

template <int KIND>
void binary(const Dims& d, const float* a, const float* b, float* o) {
  const size_t r = d.shape.size();
  const int64_t n = d.shape[r - 1];
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < r; i++) rows *= d.shape[i];
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; row++) {
      int64_t rem = row, ia = 0, ib = 0;
      for (size_t ax = r - 1; ax-- > 0;) {
        const int64_t idx = rem % d.shape[ax];
        rem /= d.shape[ax];
        ia += idx * d.sa[ax];
        ib += idx * d.sb[ax];
      }
      inner<KIND>(a + ia, d.sa[r - 1], b + ib, d.sb[r - 1], o + row * n, n);
    }
  });
}

/** Largest flat offset reachable with these strides, plus one (the length an operand must have). */
int64_t extent(const std::vector<int64_t>& shape, const std::vector<int64_t>& st) {
  int64_t e = 1;
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 0) return 0;
    e += (shape[i] - 1) * st[i];
  }
  return e;
}

}  // namespace

namespace {

/** params [rank, shape…, strideA…, strideB…] (strides per output axis, 0 where broadcast); arrays a, b, out. */
void binary_op(const Call& c, int kind) {
  const int64_t rank = c.pi(0, 0, 64);
  std::vector<int64_t> shape(rank), sa(rank), sb(rank);
  int64_t total = 1;
  for (int64_t i = 0; i < rank; i++) {
    shape[i] = c.pi(1 + i);
    sa[i] = c.pi(1 + rank + i);
    sb[i] = c.pi(1 + 2 * rank + i);
    total *= shape[i];
  }
  float* o = c.f32(2, static_cast<size_t>(total));
  if (total == 0) return;
  MLA_CHECK(static_cast<int64_t>(c.len(0)) >= extent(shape, sa) && static_cast<int64_t>(c.len(1)) >= extent(shape, sb),
            c.op + ": broadcast strides reach past an input");
  const float* a = c.f32(0, c.len(0));
  const float* b = c.f32(1, c.len(1));
  const Dims d = collapse(shape, sa, sb);
  if (kind == 0) binary<0>(d, a, b, o);
  else if (kind == 1) binary<1>(d, a, b, o);
  else binary<2>(d, a, b, o);
}

}  // namespace

void op_add(const Call& c) { binary_op(c, 0); }
void op_sub(const Call& c) { binary_op(c, 1); }
void op_mul(const Call& c) { binary_op(c, 2); }

/** params [a, b]; arrays x, out: out = a·x + b computed in double, rounded once. */
void op_affine(const Call& c) {
  const double A = c.p(0), B = c.p(1);
  const size_t n = c.len(0);
  const float* x = c.f32(0, n);
  float* o = c.f32(1, n);
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) o[i] = static_cast<float>(A * static_cast<double>(x[i]) + B);
  });
}

namespace {

/** acc[o] += x over the collapsed axes [ax, r), starting at offsets xo (in x) and oo (in acc). */
void sum_rec(const Dims& d, size_t ax, const float* x, int64_t xo, double* acc, int64_t oo) {
  const size_t r = d.shape.size();
  const int64_t n = d.shape[ax];
  if (ax + 1 == r) {
    const float* p = x + xo;
    if (d.sb[ax] == 0) {
      double s = 0.0;
      for (int64_t i = 0; i < n; i++) s += p[i];
      acc[oo] += s;
    } else {
      double* q = acc + oo;
      for (int64_t i = 0; i < n; i++) q[i] += p[i];
    }
    return;
  }
  for (int64_t i = 0; i < n; i++) sum_rec(d, ax + 1, x, xo + i * d.sa[ax], acc, oo + i * d.sb[ax]);
}

}  // namespace

/** params [rank, xShape…, outStride…] (outStride 0 on summed axes); arrays x, out (the target's size). */
void op_sum_to(const Call& c) {
  const int64_t rank = c.pi(0, 0, 64);
  std::vector<int64_t> shape(rank), sx(rank), so(rank);
  int64_t total = 1;
  for (int64_t i = 0; i < rank; i++) {
    shape[i] = c.pi(1 + i);
    so[i] = c.pi(1 + rank + i);
    total *= shape[i];
  }
  int64_t s = 1;
  for (int64_t i = rank; i-- > 0;) {
    sx[i] = s;
    s *= shape[i];
  }
  const float* x = c.f32(0, static_cast<size_t>(total));
  const size_t nout = c.len(1);
  float* out = c.f32(1, nout);
  if (nout == 0) return;
  if (total == 0) {
    std::fill(out, out + nout, 0.0f);
    return;
  }
  MLA_CHECK(extent(shape, so) <= static_cast<int64_t>(nout), "sumTo: output strides reach past the output");
  // sa = x strides, sb = output strides (0 where summed).
  const Dims d = collapse(shape, sx, so);
  std::vector<double> acc(nout, 0.0);
  const int64_t n0 = d.shape[0];
  const int64_t per = total / n0;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(per, 1));
  const int64_t nt = std::min<int64_t>(num_threads(), (n0 + grain - 1) / grain);
  if (d.sb[0] != 0 || d.shape.size() == 1 || nt <= 1 || static_cast<int64_t>(nout) * nt > total) {
    if (d.sb[0] != 0 && d.shape.size() > 1) {
      // Outer axis kept: threads write disjoint outputs.
      parallel_for(n0, grain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; i++) sum_rec(d, 1, x, i * d.sa[0], acc.data(), i * d.sb[0]);
      });
    } else if (d.shape.size() == 1 && d.sb[0] == 0) {
      // Everything sums to one value: fixed chunks, partial sums added in order.
      const int64_t chunk = 1 << 16;
      const int64_t nch = (n0 + chunk - 1) / chunk;
      std::vector<double> part(nch, 0.0);
      parallel_for(nch, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t k = c0; k < c1; k++) {
          double t = 0.0;
          for (int64_t i = k * chunk, e = std::min(n0, (k + 1) * chunk); i < e; i++) t += x[i];
          part[k] = t;
        }
      });
      for (double v : part) acc[0] += v;
    } else {
      sum_rec(d, 0, x, 0, acc.data(), 0);
    }
  } else {
    // Outer axis summed: one accumulator per thread, added in a fixed order.
    std::vector<std::vector<double>> parts(nt, std::vector<double>(nout, 0.0));
    parallel_for(nt, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        for (int64_t i = n0 * t / nt, e = n0 * (t + 1) / nt; i < e; i++) {
          sum_rec(d, 1, x, i * d.sa[0], parts[t].data(), 0);
        }
      }
    });
    for (int64_t t = 0; t < nt; t++) {
      for (size_t i = 0; i < nout; i++) acc[i] += parts[t][i];
    }
  }
  for (size_t i = 0; i < nout; i++) out[i] = static_cast<float>(acc[i]);
}

/** arrays x, out (1): Σ x² in double over fixed chunks added in order (the same result for any thread count). */
void op_sum_squares(const Call& c) {
  const int64_t n = static_cast<int64_t>(c.len(0));
  const float* x = c.f32(0, static_cast<size_t>(n));
  float* out = c.f32(1, 1);
  const int64_t chunk = 1 << 16;
  const int64_t nch = (n + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(nch), 0.0);
  parallel_for(nch, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t k = c0; k < c1; k++) part[k] = sum_squares_f64(x + k * chunk, std::min(chunk, n - k * chunk));
  });
  double s = 0.0;
  for (double v : part) s += v;
  out[0] = static_cast<float>(s);
}

}  // namespace mla

// Layout ops: permute, narrow, pad, concat (fresh copies) and writeAt (in place, for cache writes).
// Shape legend: "…" leading axes (flattened into R rows), D / len / total / Da / Db sizes of the last axis.
// No arithmetic: values are copied bit for bit. Outputs arrive zero-filled from JavaScript; pad relies on it.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {
constexpr int64_t kGrain = 32768;
constexpr int64_t kTile = 32;
}  // namespace

/** params [rank, outShape…, inStride…] (input stride of each output axis); arrays x, out. */
void op_permute(const Call& c) {
  const int64_t rank = c.pi(0, 0, 64);
  std::vector<int64_t> shape, st;
  int64_t total = 1, ext = 1;
  for (int64_t i = 0; i < rank; i++) {
    const int64_t d = c.pi(1 + i), s = c.pi(1 + rank + i);
    total *= d;
    ext += (d - 1) * s;
    if (d == 1) continue;
    if (!shape.empty() && st.back() == s * d) {
      shape.back() *= d;
      st.back() = s;
      continue;
    }
    shape.push_back(d);
    st.push_back(s);
  }
  const float* x = c.f32(0, static_cast<size_t>(total));
  float* out = c.f32(1, static_cast<size_t>(total));
  if (total == 0) return;
  MLA_CHECK(ext <= total, "permute: strides reach past the input");
  if (shape.empty() || (shape.size() == 1 && st[0] == 1)) {
    std::memcpy(out, x, static_cast<size_t>(total) * sizeof(float));
    return;
  }
  const size_t r = shape.size();
  std::vector<int64_t> os(r);
  int64_t s = 1;
  for (size_t i = r; i-- > 0;) {
    os[i] = s;
    s *= shape[i];
  }
  if (st[r - 1] == 1) {
    // The last output axis is contiguous in the input: copy rows.
    const int64_t n = shape[r - 1];
    const int64_t rows = total / n;
    parallel_for(rows, std::max<int64_t>(1, kGrain / n), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; row++) {
        int64_t rem = row, ix = 0;
        for (size_t ax = r - 1; ax-- > 0;) {
          ix += (rem % shape[ax]) * st[ax];
          rem /= shape[ax];
        }
        std::memcpy(out + row * n, x + ix, static_cast<size_t>(n) * sizeof(float));
      }
    });
    return;
  }
  // A transpose: axis p is contiguous in the input, the last axis in the output. Copy kTile × kTile tiles so that
  // both sides touch whole cache lines.
  size_t p = 0;
  for (size_t i = 0; i < r; i++) {
    if (st[i] == 1) p = i;
  }
  const int64_t np = shape[p], nl = shape[r - 1], sl = st[r - 1], osp = os[p];
  const int64_t outer = total / (np * nl);
  const int64_t ptiles = (np + kTile - 1) / kTile;
  parallel_for(outer * ptiles, std::max<int64_t>(1, kGrain / (kTile * nl)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      int64_t rem = t / ptiles, ix = 0, io = 0;
      for (size_t ax = r - 1; ax-- > 0;) {
        if (ax == p) continue;
        const int64_t idx = rem % shape[ax];
        rem /= shape[ax];
        ix += idx * st[ax];
        io += idx * os[ax];
      }
      const int64_t p0 = (t % ptiles) * kTile, p1 = std::min(np, p0 + kTile);
      for (int64_t l0 = 0; l0 < nl; l0 += kTile) {
        const int64_t l1 = std::min(nl, l0 + kTile);
        for (int64_t ip = p0; ip < p1; ip++) {
          float* dst = out + io + ip * osp;
          const float* src = x + ix + ip;
          for (int64_t il = l0; il < l1; il++) dst[il] = src[il * sl];
        }
      }
    }
  });
}

/** params [rows, D, start, len]; arrays x (rows·D), out (rows·len). */
void op_narrow(const Call& c) {
  const int64_t rows = c.pi(0), D = c.pi(1), start = c.pi(2), len = c.pi(3);
  MLA_CHECK(start + len <= D, "narrow: [start, start+len) past the last axis");
  const float* x = c.f32(0, static_cast<size_t>(rows * D));
  float* out = c.f32(1, static_cast<size_t>(rows * len));
  if (len == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / len), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) std::memcpy(out + r * len, x + r * D + start, static_cast<size_t>(len) * sizeof(float));
  });
}

/** params [rows, len, start, total]; arrays x (rows·len), out (rows·total, zero-filled by the caller). */
void op_pad(const Call& c) {
  const int64_t rows = c.pi(0), len = c.pi(1), start = c.pi(2), total = c.pi(3);
  MLA_CHECK(start + len <= total, "pad: [start, start+len) past total");
  const float* x = c.f32(0, static_cast<size_t>(rows * len));
  float* out = c.f32(1, static_cast<size_t>(rows * total));
  if (len == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / total), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      float* dst = out + r * total;
      std::memset(dst, 0, static_cast<size_t>(start) * sizeof(float));
      std::memcpy(dst + start, x + r * len, static_cast<size_t>(len) * sizeof(float));
      std::memset(dst + start + len, 0, static_cast<size_t>(total - start - len) * sizeof(float));
    }
  });
}

/** params [rows, Da, Db]; arrays a (rows·Da), b (rows·Db), out (rows·(Da+Db)). */
void op_concat(const Call& c) {
  const int64_t rows = c.pi(0), Da = c.pi(1), Db = c.pi(2);
  const int64_t Dt = Da + Db;
  const float* a = c.f32(0, static_cast<size_t>(rows * Da));
  const float* b = c.f32(1, static_cast<size_t>(rows * Db));
  float* out = c.f32(2, static_cast<size_t>(rows * Dt));
  if (Dt == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / Dt), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      std::memcpy(out + r * Dt, a + r * Da, static_cast<size_t>(Da) * sizeof(float));
      std::memcpy(out + r * Dt + Da, b + r * Db, static_cast<size_t>(Db) * sizeof(float));
    }
  });
}

/** params [offset, blocks, stride]; arrays dst (in place), src: src is cut into `blocks` equal pieces of n values,
 *  piece i goes to dst[offset + i·stride …]. */
void op_write_at(const Call& c) {
  const int64_t offset = c.pi(0), blocks = c.pi(1), stride = c.pi(2);
  const size_t total = c.len(1), nd = c.len(0);
  MLA_CHECK(blocks >= 1 && total % static_cast<size_t>(blocks) == 0, "writeAt: blocks must divide src.size");
  const size_t n = total / static_cast<size_t>(blocks);
  MLA_CHECK(blocks == 1 || static_cast<size_t>(stride) >= n, "writeAt: stride smaller than a piece");
  MLA_CHECK(offset >= 0 && static_cast<size_t>(offset) + static_cast<size_t>(blocks - 1) * static_cast<size_t>(stride) + n <= nd,
            "writeAt: the pieces run past the end of dst");
  float* dst = c.f32(0, nd);
  const float* src = c.f32(1, total);
  if (n == 0) return;
  for (int64_t i = 0; i < blocks; i++) {
    std::memmove(dst + offset + i * stride, src + i * n, n * sizeof(float));  // src may be a view of dst
  }
}

}  // namespace mla

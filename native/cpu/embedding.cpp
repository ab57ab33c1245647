// Token embedding: gather (forward) and scatter-add (backward).
// Shape legend: V vocabulary, C model width, N = ids.length rows.
// The backward groups rows by id (a counting sort) so each output row is summed by one thread in double, in the
// order of n: no atomics, and the result does not depend on the thread count. It overwrites a fresh (V, C) table.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {

/** params [V, C, N]; arrays table (V·C), ids (N, i32), out (N·C): out[n] = table[ids[n]]. */
void op_embedding(const Call& c) {
  const int64_t V = c.pi(0), C = c.pi(1), N = c.pi(2);
  const float* table = c.f32(0, static_cast<size_t>(V * C));
  const int32_t* ids = c.i32(1, static_cast<size_t>(N));
  float* out = c.f32(2, static_cast<size_t>(N * C));
  check_ids("embedding", ids, N, V);
  if (C == 0) return;
  parallel_for(N, std::max<int64_t>(1, 32768 / C), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      std::memcpy(out + n * C, table + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(float));
    }
  });
}

/** params [V, C, N]; arrays dy (N·C), ids (N, i32), out (V·C): out[v] = Σ_{n: ids[n] = v} dy[n]. */
void op_embedding_backward(const Call& c) {
  const int64_t V = c.pi(0), C = c.pi(1), N = c.pi(2);
  const float* dy = c.f32(0, static_cast<size_t>(N * C));
  const int32_t* ids = c.i32(1, static_cast<size_t>(N));
  float* out = c.f32(2, static_cast<size_t>(V * C));
  check_ids("embeddingBackward", ids, N, V);
  std::memset(out, 0, static_cast<size_t>(V * C) * sizeof(float));
  if (C == 0 || N == 0) return;
  // Counting sort of row indices by id: rows of id v are order[first[v] .. first[v+1]).
  std::vector<int64_t> first(static_cast<size_t>(V + 1), 0);
  for (int64_t n = 0; n < N; n++) first[ids[n] + 1]++;
  for (int64_t v = 0; v < V; v++) first[v + 1] += first[v];
  std::vector<int64_t> order(static_cast<size_t>(N)), fill(first.begin(), first.end() - 1);
  for (int64_t n = 0; n < N; n++) order[fill[ids[n]]++] = n;
  std::vector<int32_t> present;
  for (int64_t v = 0; v < V; v++) {
    if (first[v + 1] > first[v]) present.push_back(static_cast<int32_t>(v));
  }
  const int64_t np = static_cast<int64_t>(present.size());
  parallel_for(np, std::max<int64_t>(1, 32768 / C), [&](int64_t p0, int64_t p1) {
    std::vector<double> acc(static_cast<size_t>(C));
    for (int64_t p = p0; p < p1; p++) {
      const int64_t v = present[p];
      float* dst = out + v * C;
      const int64_t b = first[v], e = first[v + 1];
      if (e - b == 1) {
        std::memcpy(dst, dy + order[b] * C, static_cast<size_t>(C) * sizeof(float));
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t i = b; i < e; i++) {
        const float* src = dy + order[i] * C;
        for (int64_t j = 0; j < C; j++) acc[j] += src[j];
      }
      for (int64_t j = 0; j < C; j++) dst[j] = static_cast<float>(acc[j]);
    }
  });
}

}  // namespace mla

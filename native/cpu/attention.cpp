// Causal softmax attention with grouped KV heads, forward and backward (flash-attention style on the CPU).
// Shape legend: B batch, T query positions, S key positions (cache capacity), H query heads, Hkv kv heads,
// Dk query/key head dim, Dvs stored value dim, Dv = vDim value columns read, L = kvLen key rows read.
// Query head h reads kv head g(h) = floor(h·Hkv/H). Query t sits at key position qOffset + t and sees keys
// j ≤ qOffset + t with j < L.
// Forward: one task per (b, h, tile of TQ queries) streams over key blocks of TK with an online softmax (running
// max m, running sum l, rescaled accumulator), so no T×S matrix exists; it returns lse = m + log l.
// Backward: probabilities are recomputed from lse. Pass A, one task per (b, kv head, key block), owns dk and dv of
// its keys (summing over the heads of the group and all queries that see them); pass B, one task per
// (b, h, query tile), owns dq. No two tasks write the same row, so there are no atomics and results do not depend
// on the thread count. Gradients overwrite the outputs (nothing accumulates into existing buffers).
// Non-finite values follow the reference formula (src/backends/ref/attention.ts) exactly: a NaN or +∞ score, or a row
// whose visible scores are all −∞, makes the whole output row and its lse NaN (the reference's Σ exp(s − max) is NaN
// there); every visible key contributes p·v even when p = 0 (so 0·∞ = NaN as in the reference); only a row that sees
// no key at all is zero with lse = −∞. The running-max and row-sum tests below must not swallow NaN (issue 11).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops.h"
#include "threadpool.h"

namespace mla {
namespace {

constexpr int64_t TQ = 16;  // query rows per tile
constexpr int64_t TK = 64;  // keys per block (8 ymm lanes of scores per query row)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

/** s[j] = Σ_d x[d]·Mt[d·TK + j] for j < TK (one query row against a transposed key or value block). */
inline void row_dots(const float* x, int64_t D, const float* Mt, float* s) {
#if MLA_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  __m256 a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const __m256 xd = _mm256_broadcast_ss(x + d);
    const float* m = Mt + d * TK;
    a0 = _mm256_fmadd_ps(xd, _mm256_load_ps(m), a0);
    a1 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 8), a1);
    a2 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 16), a2);
    a3 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 24), a3);
    a4 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 32), a4);
    a5 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 40), a5);
    a6 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 48), a6);
    a7 = _mm256_fmadd_ps(xd, _mm256_load_ps(m + 56), a7);
  }
  _mm256_storeu_ps(s, a0);
  _mm256_storeu_ps(s + 8, a1);
  _mm256_storeu_ps(s + 16, a2);
  _mm256_storeu_ps(s + 24, a3);
  _mm256_storeu_ps(s + 32, a4);
  _mm256_storeu_ps(s + 40, a5);
  _mm256_storeu_ps(s + 48, a6);
  _mm256_storeu_ps(s + 56, a7);
#else
  for (int64_t j = 0; j < TK; j++) s[j] = 0.0f;
  for (int64_t d = 0; d < D; d++) {
    for (int64_t j = 0; j < TK; j++) s[j] += x[d] * Mt[d * TK + j];
  }
#endif
}

/** Mt[d·TK + j] = row j of the block (at base + j·stride), column d < D; rows kn ≤ j < TK are zero. */
void transpose_block(const float* base, int64_t stride, int64_t kn, int64_t D, float* Mt) {
  for (int64_t j = 0; j < kn; j++) {
    const float* src = base + j * stride;
    for (int64_t d = 0; d < D; d++) Mt[d * TK + j] = src[d];
  }
  for (int64_t j = kn; j < TK; j++) {
    for (int64_t d = 0; d < D; d++) Mt[d * TK + j] = 0.0f;
  }
}

struct Dims {
  int64_t B, T, H, Dk, S, Hkv, Dv, qOffset, kvLen;
  float scale;
  int64_t group(int64_t h) const { return h * Hkv / H; }
  /** Number of keys query t sees. */
  int64_t visible(int64_t t) const { return std::max<int64_t>(0, std::min(qOffset + t + 1, kvLen)); }
};

thread_local Scratch<float> tl_kt, tl_vt, tl_s, tl_ds, tl_acc, tl_dk, tl_dv;

/** For query rows [t0, t0+nr) of head h against keys [kb, kb+kn) (transposed in Kt, Vt):
 *  P[r][j] = exp(scale·q·k − lse) on visible keys (else 0), dS[r][j] = scale·P·(dout·v − Δ). */
void prob_tile(const Dims& d, int64_t b, int64_t h, int64_t t0, int64_t nr, int64_t kb, int64_t kn, const float* q,
               const float* dout, const float* lse, const float* delta, const float* Kt, const float* Vt, float* P,
               float* dS) {
  alignas(32) float dp[TK];
  for (int64_t r = 0; r < nr; r++) {
    const int64_t t = t0 + r;
    float* pr = P + r * TK;
    float* dsr = dS + r * TK;
    const int64_t lim = std::min(d.visible(t) - kb, kn);
    const float l = lse[(b * d.H + h) * d.T + t];
    // A NaN or infinite lse is used as is (exp(s − NaN) = NaN), as the reference does: no masked-row shortcut.
    if (lim <= 0) {
      std::fill(pr, pr + TK, 0.0f);
      std::fill(dsr, dsr + TK, 0.0f);
      continue;
    }
    const int64_t row = (b * d.T + t) * d.H + h;
    row_dots(q + row * d.Dk, d.Dk, Kt, pr);
    exp_shift_sum(pr, pr, lim, d.scale, l);
    std::fill(pr + lim, pr + TK, 0.0f);
    row_dots(dout + row * d.Dv, d.Dv, Vt, dp);
    const float dl = delta[row];
    for (int64_t j = 0; j < TK; j++) dsr[j] = d.scale * (pr[j] * (dp[j] - dl));
  }
}

}  // namespace

/** params [B, T, H, Dk, S, Hkv, Dvs, scale, qOffset, kvLen, vDim]; arrays q (B·T·H·Dk), k (B·S·Hkv·Dk),
 *  v (B·S·Hkv·Dvs), o (B·T·H·vDim) out, lse (B·H·T) out.
 *  o[b,t,h] = Σ_j softmax_j(scale·q·k_j)·v_j[:vDim] over visible j; lse = log Σ_j exp(scale·q·k_j). */
void op_attention(const Call& c) {
  Dims d{};
  d.B = c.pi(0);
  d.T = c.pi(1);
  d.H = c.pi(2, 1);
  d.Dk = c.pi(3);
  d.S = c.pi(4);
  d.Hkv = c.pi(5, 1);
  const int64_t Dvs = c.pi(6);
  d.scale = static_cast<float>(c.p(7));
  d.qOffset = c.pi(8, -(int64_t{1} << 40));
  d.kvLen = c.pi(9);
  d.Dv = c.pi(10);
  MLA_CHECK(d.kvLen <= d.S, "attention: kvLen > S");
  MLA_CHECK(d.Dv <= Dvs, "attention: vDim > stored value dim");
  const float* q = c.f32(0, static_cast<size_t>(d.B * d.T * d.H * d.Dk));
  const float* k = c.f32(1, static_cast<size_t>(d.B * d.S * d.Hkv * d.Dk));
  const float* v = c.f32(2, static_cast<size_t>(d.B * d.S * d.Hkv * Dvs));
  float* o = c.f32(3, static_cast<size_t>(d.B * d.T * d.H * d.Dv));
  float* lse = c.f32(4, static_cast<size_t>(d.B * d.H * d.T));
  const int64_t ntq = (d.T + TQ - 1) / TQ;
  // A decode step (T = 1) over a short cache is a few microseconds of work: not worth handing to the pool.
  const double work = static_cast<double>(d.B * d.H * d.T) * static_cast<double>(d.kvLen) * static_cast<double>(d.Dk + d.Dv);
  parallel_tasks(d.B * d.H * ntq, work, [&](int64_t task) {
    const int64_t tile = ntq - 1 - task % ntq;  // the longest tiles (latest queries) first
    const int64_t bh = task / ntq;
    const int64_t b = bh / d.H, h = bh % d.H, g = d.group(h);
    const int64_t t0 = tile * TQ, nr = std::min(TQ, d.T - t0);
    float* Kt = tl_kt.get(static_cast<size_t>(d.Dk * TK));
    float* Sc = tl_s.get(static_cast<size_t>(TQ * TK));
    float* acc = tl_acc.get(static_cast<size_t>(TQ * std::max<int64_t>(d.Dv, 1)));
    double l[TQ];
    float m[TQ];
    bool live[TQ];
    int64_t lims[TQ];
    bool poisoned[TQ];  // a visible score was NaN or +∞: the reference's row sum is NaN
    bool seen[TQ];      // at least one visible key
    for (int64_t r = 0; r < nr; r++) {
      l[r] = 0.0;
      m[r] = kNegInf;
      poisoned[r] = false;
      seen[r] = false;
    }
    std::fill(acc, acc + nr * d.Dv, 0.0f);
    const int64_t maxVis = d.visible(t0 + nr - 1);
    // One or two query rows (decode): direct dot products; transposing the key block would cost as much as using it.
    const bool direct = nr <= 2;
    const int64_t kStride = d.Hkv * d.Dk;
    for (int64_t kb = 0; kb < maxVis; kb += TK) {
      const int64_t kn = std::min(TK, maxVis - kb);
      const float* kblk = k + ((b * d.S + kb) * d.Hkv + g) * d.Dk;
      if (!direct) transpose_block(kblk, kStride, kn, d.Dk, Kt);
      for (int64_t r = 0; r < nr; r++) {
        const int64_t t = t0 + r;
        const int64_t lim = std::min(d.visible(t) - kb, kn);
        lims[r] = lim;
        live[r] = lim > 0 && !poisoned[r];
        if (!live[r]) continue;
        seen[r] = true;
        float* sr = Sc + r * TK;
        const float* qr = q + ((b * d.T + t) * d.H + h) * d.Dk;
        if (direct) {
          for (int64_t j = 0; j < lim; j++) sr[j] = dot_f32(qr, kblk + j * kStride, d.Dk);
        } else {
          row_dots(qr, d.Dk, Kt, sr);
        }
        float bm = kNegInf;
        bool bad = false;
        for (int64_t j = 0; j < lim; j++) {
          sr[j] *= d.scale;
          bm = sr[j] > bm ? sr[j] : bm;
          bad |= !(sr[j] < kInf);  // NaN or +∞ (NaN fails the max test above)
        }
        if (bad) {
          poisoned[r] = true;
          live[r] = false;
          continue;
        }
        const float mn = std::max(m[r], bm);
        if (mn == kNegInf) {
          // Every visible score so far is −∞: p = 0 for these keys (exp(−∞ − −∞) would be NaN here, but a later
          // finite score makes the reference's p exactly 0); 0·v still reaches the accumulator below.
          std::fill(sr, sr + TK, 0.0f);
          continue;
        }
        const float alpha = m[r] > kNegInf ? std::exp(m[r] - mn) : 0.0f;
        const double sum = exp_shift_sum(sr, sr, lim, 1.0f, mn);
        std::fill(sr + lim, sr + TK, 0.0f);
        l[r] = l[r] * alpha + sum;
        m[r] = mn;
        if (alpha != 1.0f) scale_inplace(alpha, acc + r * d.Dv, d.Dv);
      }
      // acc[r] += Σ_j P[r][j]·v_j: each value row is loaded once for the whole tile.
      for (int64_t j = 0; j < kn; j++) {
        const float* vr = v + ((b * d.S + kb + j) * d.Hkv + g) * Dvs;
        for (int64_t r = 0; r < nr; r++) {
          const float p = Sc[r * TK + j];
          // Every visible key, p = 0 included: 0·∞ must give NaN as in the reference.
          if (live[r] && j < lims[r]) axpy(p, vr, acc + r * d.Dv, d.Dv);
        }
      }
    }
    for (int64_t r = 0; r < nr; r++) {
      const int64_t t = t0 + r;
      float* orow = o + ((b * d.T + t) * d.H + h) * d.Dv;
      float* lrow = lse + (b * d.H + h) * d.T + t;
      if (poisoned[r] || (seen[r] && l[r] == 0.0)) {
        // A NaN/+∞ score, or all visible scores −∞ (Σ exp(−∞ − −∞) = NaN in the reference).
        std::fill(orow, orow + d.Dv, kNaN);
        *lrow = kNaN;
      } else if (seen[r]) {
        const float inv = static_cast<float>(1.0 / l[r]);
        for (int64_t i = 0; i < d.Dv; i++) orow[i] = acc[r * d.Dv + i] * inv;
        *lrow = static_cast<float>(static_cast<double>(m[r]) + std::log(l[r]));
      } else {
        std::fill(orow, orow + d.Dv, 0.0f);
        *lrow = kNegInf;
      }
    }
  });
}

/** params [B, T, H, Dk, S, Hkv, Dv, scale, qOffset]; arrays dout (B·T·H·Dv), q, k, v, o (B·T·H·Dv), lse (B·H·T),
 *  dq (B·T·H·Dk) out, dk (B·S·Hkv·Dk) out, dv (B·S·Hkv·Dv) out. kvLen = S and vDim = Dv (training).
 *  With P = exp(scale·q·k − lse), Δ = dout·o, dS = P·(dout·v − Δ):
 *  dq = scale·Σ_j dS_j·k_j,  dk_j = scale·Σ dS_j·q,  dv_j = Σ P_j·dout (sums over queries and the heads of a group). */
void op_attention_backward(const Call& c) {
  Dims d{};
  d.B = c.pi(0);
  d.T = c.pi(1);
  d.H = c.pi(2, 1);
  d.Dk = c.pi(3);
  d.S = c.pi(4);
  d.Hkv = c.pi(5, 1);
  d.Dv = c.pi(6);
  d.scale = static_cast<float>(c.p(7));
  d.qOffset = c.pi(8, -(int64_t{1} << 40));
  d.kvLen = d.S;
  const size_t nq = static_cast<size_t>(d.B * d.T * d.H);
  const float* dout = c.f32(0, nq * d.Dv);
  const float* q = c.f32(1, nq * d.Dk);
  const float* k = c.f32(2, static_cast<size_t>(d.B * d.S * d.Hkv * d.Dk));
  const float* v = c.f32(3, static_cast<size_t>(d.B * d.S * d.Hkv * d.Dv));
  const float* o = c.f32(4, nq * d.Dv);
  const float* lse = c.f32(5, nq);
  float* dq = c.f32(6, nq * d.Dk);
  float* dk = c.f32(7, static_cast<size_t>(d.B * d.S * d.Hkv * d.Dk));
  float* dv = c.f32(8, static_cast<size_t>(d.B * d.S * d.Hkv * d.Dv));

  // Δ per query row (indexed like q rows: (b·T + t)·H + h).
  Scratch<float> deltaBuf;
  float* delta = deltaBuf.get(std::max<size_t>(nq, 1));
  parallel_for(static_cast<int64_t>(nq), std::max<int64_t>(1, 16384 / std::max<int64_t>(d.Dv, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; r++) {
                   delta[r] = static_cast<float>(dot_f64(dout + r * d.Dv, o + r * d.Dv, d.Dv));
                 }
               });

  // Pass A: dk, dv per (b, g, key block).
  const int64_t nkb = (d.S + TK - 1) / TK;
  parallel_tasks(d.B * d.Hkv * nkb, [&](int64_t task) {
    const int64_t kblock = task % nkb;
    const int64_t b = (task / nkb) / d.Hkv, g = (task / nkb) % d.Hkv;
    const int64_t kb = kblock * TK, kn = std::min(TK, d.S - kb);
    float* Kt = tl_kt.get(static_cast<size_t>(d.Dk * TK));
    float* Vt = tl_vt.get(static_cast<size_t>(std::max<int64_t>(d.Dv, 1) * TK));
    float* P = tl_s.get(static_cast<size_t>(TQ * TK));
    float* dS = tl_ds.get(static_cast<size_t>(TQ * TK));
    float* dKb = tl_dk.get(static_cast<size_t>(TK * std::max<int64_t>(d.Dk, 1)));
    float* dVb = tl_dv.get(static_cast<size_t>(TK * std::max<int64_t>(d.Dv, 1)));
    std::fill(dKb, dKb + TK * d.Dk, 0.0f);
    std::fill(dVb, dVb + TK * d.Dv, 0.0f);
    transpose_block(k + ((b * d.S + kb) * d.Hkv + g) * d.Dk, d.Hkv * d.Dk, kn, d.Dk, Kt);
    transpose_block(v + ((b * d.S + kb) * d.Hkv + g) * d.Dv, d.Hkv * d.Dv, kn, d.Dv, Vt);
    // The first query that sees key kb: qOffset + t + 1 > kb.
    const int64_t tstart = std::max<int64_t>(0, kb - d.qOffset);
    for (int64_t h = 0; h < d.H; h++) {
      if (d.group(h) != g) continue;
      for (int64_t t0 = tstart; t0 < d.T; t0 += TQ) {
        const int64_t nr = std::min(TQ, d.T - t0);
        prob_tile(d, b, h, t0, nr, kb, kn, q, dout, lse, delta, Kt, Vt, P, dS);
        // Every visible (query, key) pair contributes, p = 0 included (0·∞ = NaN as in the reference).
        for (int64_t j = 0; j < kn; j++) {
          float* dvr = dVb + j * d.Dv;
          float* dkr = dKb + j * d.Dk;
          for (int64_t r = 0; r < nr; r++) {
            if (kb + j >= d.visible(t0 + r)) continue;
            const int64_t row = (b * d.T + t0 + r) * d.H + h;
            axpy(P[r * TK + j], dout + row * d.Dv, dvr, d.Dv);
            axpy(dS[r * TK + j], q + row * d.Dk, dkr, d.Dk);
          }
        }
      }
    }
    for (int64_t j = 0; j < kn; j++) {
      const int64_t row = (b * d.S + kb + j) * d.Hkv + g;
      std::memcpy(dk + row * d.Dk, dKb + j * d.Dk, static_cast<size_t>(d.Dk) * sizeof(float));
      std::memcpy(dv + row * d.Dv, dVb + j * d.Dv, static_cast<size_t>(d.Dv) * sizeof(float));
    }
  });

  // Pass B: dq per (b, h, query tile).
  const int64_t ntq = (d.T + TQ - 1) / TQ;
  parallel_tasks(d.B * d.H * ntq, [&](int64_t task) {
    const int64_t tile = ntq - 1 - task % ntq;
    const int64_t bh = task / ntq;
    const int64_t b = bh / d.H, h = bh % d.H, g = d.group(h);
    const int64_t t0 = tile * TQ, nr = std::min(TQ, d.T - t0);
    float* Kt = tl_kt.get(static_cast<size_t>(d.Dk * TK));
    float* Vt = tl_vt.get(static_cast<size_t>(std::max<int64_t>(d.Dv, 1) * TK));
    float* P = tl_s.get(static_cast<size_t>(TQ * TK));
    float* dS = tl_ds.get(static_cast<size_t>(TQ * TK));
    float* dQb = tl_acc.get(static_cast<size_t>(TQ * std::max<int64_t>(d.Dk, 1)));
    std::fill(dQb, dQb + nr * d.Dk, 0.0f);
    const int64_t maxVis = d.visible(t0 + nr - 1);
    for (int64_t kb = 0; kb < maxVis; kb += TK) {
      const int64_t kn = std::min(TK, maxVis - kb);
      transpose_block(k + ((b * d.S + kb) * d.Hkv + g) * d.Dk, d.Hkv * d.Dk, kn, d.Dk, Kt);
      transpose_block(v + ((b * d.S + kb) * d.Hkv + g) * d.Dv, d.Hkv * d.Dv, kn, d.Dv, Vt);
      prob_tile(d, b, h, t0, nr, kb, kn, q, dout, lse, delta, Kt, Vt, P, dS);
      for (int64_t j = 0; j < kn; j++) {
        const float* kr = k + ((b * d.S + kb + j) * d.Hkv + g) * d.Dk;
        for (int64_t r = 0; r < nr; r++) {
          if (kb + j < d.visible(t0 + r)) axpy(dS[r * TK + j], kr, dQb + r * d.Dk, d.Dk);
        }
      }
    }
    for (int64_t r = 0; r < nr; r++) {
      const int64_t row = (b * d.T + t0 + r) * d.H + h;
      std::memcpy(dq + row * d.Dk, dQb + r * d.Dk, static_cast<size_t>(d.Dk) * sizeof(float));
    }
  });
}

/** Attention mass by query−key distance (calibration; src/backends/ref/attention.ts attentionDistance is the formula).
 *  params [B, T, H, Dk, S, Hkv, scale, qOffset]; arrays q (B·T·H·Dk), k (B·S·Hkv·Dk), dist (H·S) out.
 *  One task per query head owns its dist row (no two tasks write one entry; the result does not depend on the thread
 *  count); scores are f32 dot products, the softmax and the sums are double, evaluated as the reference writes them
 *  (a NaN or +∞ score, or a row of −∞ scores, makes that row's probabilities NaN). */
void op_attention_distance(const Call& c) {
  const int64_t B = c.pi(0), T = c.pi(1), H = c.pi(2, 1), Dk = c.pi(3), S = c.pi(4), Hkv = c.pi(5, 1);
  const float scale = static_cast<float>(c.p(6));
  const int64_t qOffset = c.pi(7);
  MLA_CHECK(qOffset + T <= S, "attentionDistance: qOffset + T > S");
  const float* q = c.f32(0, static_cast<size_t>(B * T * H * Dk));
  const float* k = c.f32(1, static_cast<size_t>(B * S * Hkv * Dk));
  float* dist = c.f32(2, static_cast<size_t>(H * S));
  parallel_tasks(H, [&](int64_t h) {
    const int64_t g = (h * Hkv) / H;
    std::vector<double> acc(static_cast<size_t>(S), 0.0);
    std::vector<double> p(static_cast<size_t>(S));
    for (int64_t b = 0; b < B; b++) {
      for (int64_t t = 0; t < T; t++) {
        const int64_t last = qOffset + t;
        const float* qr = q + ((b * T + t) * H + h) * Dk;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= last; j++) {
          const double s = static_cast<double>(scale * dot_f32(qr, k + ((b * S + j) * Hkv + g) * Dk, Dk));
          p[j] = s;
          if (s > mx) mx = s;  // a NaN score is skipped here and poisons z below, as in the reference
        }
        double z = 0.0;
        for (int64_t j = 0; j <= last; j++) z += p[j] = std::exp(p[j] - mx);
        for (int64_t j = 0; j <= last; j++) acc[last - j] += p[j] / z;
      }
    }
    for (int64_t d = 0; d < S; d++) dist[h * S + d] = static_cast<float>(acc[d]);
  });
}

}  // namespace mla

// The argument record every op entry point receives from addon.cpp, and the entry points (one per op in
// src/tensor/ops.ts, grouped in files named like the ref backend's: matmul.cpp, elementwise.cpp, …).
// Calling convention (fixed by src/backends/cpu/index.ts): run(op, params: Float64Array, ...arrays), where the arrays
// are the op's inputs followed by its preallocated outputs (Float32Array, Int32Array ids/targets/positions,
// Float64Array invFreq, Uint16Array bf16/f16 weights). Every entry point checks each array's element type and length before touching memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace mla {

enum class ArrType { F32, I32, F64, U16 };

struct Arr {
  void* data = nullptr;
  size_t len = 0;
  ArrType type = ArrType::F32;
};

struct Call {
  std::string op;
  const double* params = nullptr;
  size_t nparams = 0;
  std::vector<Arr> arrs;

  double p(size_t i) const {
    MLA_CHECK(i < nparams, op + ": missing parameter " + std::to_string(i));
    return params[i];
  }
  /** An integer parameter (shape, offset, flag), checked to be integral and in [lo, hi]. */
  int64_t pi(size_t i, int64_t lo = 0, int64_t hi = (int64_t{1} << 53)) const {
    double v = p(i);
    MLA_CHECK(v == static_cast<double>(static_cast<int64_t>(v)) && v >= static_cast<double>(lo) &&
                  v <= static_cast<double>(hi),
              op + ": parameter " + std::to_string(i) + " = " + std::to_string(v) + " is not an integer in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int64_t>(v);
  }
  const Arr& arr(size_t i, ArrType t, size_t len) const {
    MLA_CHECK(i < arrs.size(), op + ": missing array argument " + std::to_string(i));
    const Arr& a = arrs[i];
    static const char* names[] = {"Float32Array", "Int32Array", "Float64Array", "Uint16Array"};
    MLA_CHECK(a.type == t, op + ": array argument " + std::to_string(i) + " must be a " + names[static_cast<int>(t)]);
    MLA_CHECK(a.len == len, op + ": array argument " + std::to_string(i) + " has " + std::to_string(a.len) +
                                " elements, expected " + std::to_string(len));
    return a;
  }
  float* f32(size_t i, size_t len) const { return static_cast<float*>(arr(i, ArrType::F32, len).data); }
  const int32_t* i32(size_t i, size_t len) const { return static_cast<const int32_t*>(arr(i, ArrType::I32, len).data); }
  const double* f64(size_t i, size_t len) const { return static_cast<const double*>(arr(i, ArrType::F64, len).data); }
  /** bf16 / f16 bit patterns (half-precision weights). */
  const uint16_t* u16(size_t i, size_t len) const { return static_cast<const uint16_t*>(arr(i, ArrType::U16, len).data); }
  size_t len(size_t i) const {
    MLA_CHECK(i < arrs.size(), op + ": missing array argument " + std::to_string(i));
    return arrs[i].len;
  }
};

using OpFn = void (*)(const Call&);

// matmul.cpp
void op_matmul(const Call&);
// elementwise.cpp
void op_add(const Call&);
void op_sub(const Call&);
void op_mul(const Call&);
void op_affine(const Call&);
void op_sum_to(const Call&);
void op_sum_squares(const Call&);
// layout.cpp
void op_permute(const Call&);
void op_narrow(const Call&);
void op_pad(const Call&);
void op_concat(const Call&);
void op_write_at(const Call&);
// norm.cpp
void op_rmsnorm(const Call&);
void op_rmsnorm_backward(const Call&);
// rope.cpp
void op_rope(const Call&);
// attention.cpp
void op_attention(const Call&);
void op_attention_backward(const Call&);
void op_attention_distance(const Call&);
// swiglu.cpp
void op_swiglu(const Call&);
void op_swiglu_backward(const Call&);
// embedding.cpp
void op_embedding(const Call&);
void op_embedding_backward(const Call&);
// losses.cpp
void op_cross_entropy(const Call&);
void op_cross_entropy_backward(const Call&);
void op_kl_div(const Call&);
void op_kl_div_backward(const Call&);
// optim.cpp
void op_adamw(const Call&);
// half.cpp: the weight-reading kernels on bf16/f16 storage (not ops of their own in tensor/ops.ts: the cpu backend
// calls them for matmul with a half b and embedding with a half table)
void op_matmul_half(const Call&);
void op_embedding_half(const Call&);

/** C = op(A)·op(B) for `batch` matrices, overwriting C (row-major; A is (M, K) or (K, M) when transA, B is (K, N) or
 *  (N, K) when transB; B advances by bStride per batch entry, 0 for a shared weight). OpenBLAS when loaded and
 *  enabled, the own packed AVX2 kernel otherwise. */
void sgemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, bool transA, const float* B,
                   bool transB, int64_t bStride, float* C);

}  // namespace mla

// N-API module of the cpu backend: op dispatch by name, argument unpacking, and the C++ → JS error boundary.
// JS API (wrapped by src/backends/cpu/index.ts, which validates shapes before every call):
//   run(op, params: Float64Array, ...arrays)   inputs then preallocated outputs (Float32Array / Int32Array /
//                                              Float64Array); see each op's doc comment for its layout
//   svd(a, m, n, u, s, vt) / eigh(a, n, values, vectors)   LAPACKE, float64 (linalg.cpp)
//   info()  ops()  setThreads(n)  setBlasEnabled(on)
// Every failure becomes a thrown JS Error naming the op; nothing here aborts the process.
#include <napi.h>

#include <string>
#include <unordered_map>

#include "blas.h"
#include "simd.h"
#include "linalg.h"
#include "ops.h"
#include "threadpool.h"

namespace {

using mla::Arr;
using mla::ArrType;
using mla::Call;
using mla::OpFn;

const std::unordered_map<std::string, OpFn>& op_table() {
  static const std::unordered_map<std::string, OpFn> table = {
      {"matmul", mla::op_matmul},
      {"add", mla::op_add},
      {"sub", mla::op_sub},
      {"mul", mla::op_mul},
      {"affine", mla::op_affine},
      {"sumTo", mla::op_sum_to},
      {"sumSquares", mla::op_sum_squares},
      {"permute", mla::op_permute},
      {"narrow", mla::op_narrow},
      {"pad", mla::op_pad},
      {"concat", mla::op_concat},
      {"writeAt", mla::op_write_at},
      {"rmsnorm", mla::op_rmsnorm},
      {"rmsnormBackward", mla::op_rmsnorm_backward},
      {"rope", mla::op_rope},
      {"attention", mla::op_attention},
      {"attentionBackward", mla::op_attention_backward},
      {"attentionDistance", mla::op_attention_distance},
      {"swiglu", mla::op_swiglu},
      {"swigluBackward", mla::op_swiglu_backward},
      {"embedding", mla::op_embedding},
      {"embeddingBackward", mla::op_embedding_backward},
      {"crossEntropy", mla::op_cross_entropy},
      {"crossEntropyBackward", mla::op_cross_entropy_backward},
      {"klDiv", mla::op_kl_div},
      {"klDivBackward", mla::op_kl_div_backward},
      {"adamw", mla::op_adamw},
      {"matmulHalf", mla::op_matmul_half},
      {"embeddingHalf", mla::op_embedding_half},
  };
  return table;
}

/** A typed array's element pointer (byte offset applied), length and type; throws for anything else. */
Arr typed_array(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray()) throw mla::Error(what + " is not a typed array");
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer;
  size_t offset = 0;
  napi_status st = napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &offset);
  if (st != napi_ok) throw mla::Error(what + ": napi_get_typedarray_info failed");
  Arr a;
  a.data = data;
  a.len = length;
  switch (type) {
    case napi_float32_array:
      a.type = ArrType::F32;
      break;
    case napi_int32_array:
      a.type = ArrType::I32;
      break;
    case napi_float64_array:
      a.type = ArrType::F64;
      break;
    case napi_uint16_array:
      a.type = ArrType::U16;
      break;
    default:
      throw mla::Error(what + " must be a Float32Array, Int32Array, Float64Array or Uint16Array");
  }
  return a;
}

[[noreturn]] void rethrow_js(const Napi::Env& env, const std::string& where, const std::exception& e) {
  throw Napi::Error::New(env, "mla_cpu " + where + ": " + e.what());
}

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string op = "run";
  try {
    if (info.Length() < 2 || !info[0].IsString()) throw mla::Error("expected run(op, params, ...arrays)");
    op = info[0].As<Napi::String>().Utf8Value();
    const auto& table = op_table();
    auto it = table.find(op);
    if (it == table.end()) throw mla::Error("no native kernel for this op");
    Call c;
    c.op = op;
    Arr p = typed_array(env, info[1], "params");
    if (p.type != ArrType::F64) throw mla::Error("params must be a Float64Array");
    c.params = static_cast<const double*>(p.data);
    c.nparams = p.len;
    c.arrs.reserve(info.Length() - 2);
    for (size_t i = 2; i < info.Length(); i++) {
      c.arrs.push_back(typed_array(env, info[i], "array argument " + std::to_string(i - 2)));
    }
    it->second(c);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "mla_cpu " + op + ": out of memory");
  } catch (const std::exception& e) {
    rethrow_js(env, op, e);
  }
  return env.Undefined();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) throw mla::Error(std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 9007199254740992.0) || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw mla::Error(std::string(name) + " must be a non-negative integer");
  }
  return static_cast<int64_t>(v);
}

double* f64_arg(const Napi::Env& env, const Napi::CallbackInfo& info, size_t i, const char* name, size_t len) {
  if (i >= info.Length()) throw mla::Error(std::string(name) + " is missing");
  Arr a = typed_array(env, info[i], name);
  if (a.type != ArrType::F64) throw mla::Error(std::string(name) + " must be a Float64Array");
  if (a.len != len) {
    throw mla::Error(std::string(name) + " has " + std::to_string(a.len) + " elements, expected " + std::to_string(len));
  }
  return static_cast<double*>(a.data);
}

Napi::Value Svd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const int64_t m = int_arg(info, 1, "m"), n = int_arg(info, 2, "n"), k = std::min(m, n);
    const double* a = f64_arg(env, info, 0, "a", static_cast<size_t>(m * n));
    mla::svd(a, m, n, f64_arg(env, info, 3, "u", static_cast<size_t>(m * k)), f64_arg(env, info, 4, "s", static_cast<size_t>(k)),
             f64_arg(env, info, 5, "vt", static_cast<size_t>(k * n)));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_js(env, "svd", e);
  }
  return env.Undefined();
}

Napi::Value Eigh(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const int64_t n = int_arg(info, 1, "n");
    const double* a = f64_arg(env, info, 0, "a", static_cast<size_t>(n * n));
    mla::eigh(a, n, f64_arg(env, info, 2, "values", static_cast<size_t>(n)),
              f64_arg(env, info, 3, "vectors", static_cast<size_t>(n * n)));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_js(env, "eigh", e);
  }
  return env.Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const mla::BlasLib& lib = mla::blas();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", Napi::Number::New(env, mla::num_threads()));
  o.Set("simd", Napi::String::New(env, mla::simd_name()));
  o.Set("avx512", Napi::Boolean::New(env, mla::simd_avx512_supported()));
  o.Set("blas", lib.sgemm ? Napi::Value(Napi::String::New(env, lib.blas_name)) : env.Null());
  o.Set("blasReason", Napi::String::New(env, lib.blas_reason));
  o.Set("blasEnabled", Napi::Boolean::New(env, mla::blas_active()));
  o.Set("lapack", Napi::Boolean::New(env, mla::lapack_available()));
  o.Set("lapackReason", Napi::String::New(env, lib.lapack_reason));
  return o;
}

Napi::Value Ops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& kv : op_table()) a.Set(i++, Napi::String::New(env, kv.first));
  return a;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const int64_t n = int_arg(info, 0, "threads");
    if (n < 1) throw mla::Error("threads must be ≥ 1");
    mla::ThreadPool::get().set_threads(static_cast<int>(std::min<int64_t>(n, 256)));
    const mla::BlasLib& lib = mla::blas();
    if (lib.set_threads) lib.set_threads(mla::num_threads());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_js(env, "setThreads", e);
  }
  return Napi::Number::New(env, mla::num_threads());
}

Napi::Value SetBlasEnabled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(env, "setBlasEnabled(on: boolean)");
  mla::blas().use_blas = info[0].As<Napi::Boolean>().Value();
  return Napi::Boolean::New(env, mla::blas_active());
}

/** setSimd('avx512' | 'avx2'): which variant family the kernels take (avx512 only where supported); returns the one
 *  in effect. */
Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "setSimd(level: 'avx512' | 'avx2')");
  const std::string level = info[0].As<Napi::String>().Utf8Value();
  if (level != "avx512" && level != "avx2") throw Napi::TypeError::New(env, "setSimd: expected 'avx512' or 'avx2', got '" + level + "'");
  mla::set_simd_avx512(level == "avx512");
  return Napi::String::New(env, mla::simd_name());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("svd", Napi::Function::New(env, Svd, "svd"));
  exports.Set("eigh", Napi::Function::New(env, Eigh, "eigh"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("ops", Napi::Function::New(env, Ops, "ops"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setBlasEnabled", Napi::Function::New(env, SetBlasEnabled, "setBlasEnabled"));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd, "setSimd"));
  return exports;
}

}  // namespace

NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)

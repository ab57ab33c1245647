// See simd.h.
#include "simd.h"

#include <cstdlib>
#include <cstring>

#include "common.h"

namespace mla {

bool simd_avx512_supported() {
#if MLA_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

static bool initial_avx512() {
  const char* env = std::getenv("MLA_SIMD");
  if (env && std::strcmp(env, "avx2") == 0) return false;
  return simd_avx512_supported();
}

bool g_simd_avx512 = initial_avx512();

bool set_simd_avx512(bool on) {
  g_simd_avx512 = on && simd_avx512_supported();
  return g_simd_avx512;
}

const char* simd_name() { return g_simd_avx512 ? "avx512" : MLA_AVX2 ? "avx2+fma" : "scalar"; }

}  // namespace mla

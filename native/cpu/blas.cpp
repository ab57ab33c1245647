// dlopen loader for OpenBLAS and LAPACKE (see blas.h). Failure to load is not an error: the reason is kept for
// `mla info` and the own kernels (matmul.cpp) or the TypeScript linear algebra are used instead.
#include "blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "threadpool.h"

namespace mla {

static std::string dl_error() {
  const char* e = dlerror();
  return e ? std::string(e) : std::string("unknown dlopen error");
}

/**
 * OpenBLAS's DYNAMIC_ARCH picks its kernels from the CPU model at load time; a CPU newer than the library (0.3.21 on
 * an Emerald Rapids Xeon, model 207) falls back to "Prescott", plain SSE3: 8 GFLOP/s where SkylakeX gives 40-75 on
 * one core. Unless the user set OPENBLAS_CORETYPE, name the kernel family the CPU's features allow, before dlopen
 * (the library reads it in its constructor). "SkylakeX" needs AVX-512 F/DQ/BW/VL, "Haswell" AVX2+FMA; both are the
 * families OpenBLAS itself picks for every such CPU it recognises (sgemm has no newer kernel), so nothing is lost.
 */
static void choose_openblas_core() {
  const char* user = std::getenv("OPENBLAS_CORETYPE");
  if (user && *user) return;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const char* core = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    core = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    core = "Haswell";
  }
  // openblas_get_config() then names the family in effect (`mla info`, the sgemm bench).
  if (core) setenv("OPENBLAS_CORETYPE", core, 0);
#endif
}

static BlasLib load() {
  BlasLib lib;
  const char* off = std::getenv("MLA_NO_BLAS");
  if (off && *off && std::strcmp(off, "0") != 0) {
    lib.blas_reason = "disabled by MLA_NO_BLAS";
    lib.lapack_reason = "disabled by MLA_NO_BLAS";
    return lib;
  }
  choose_openblas_core();
  // RTLD_LOCAL keeps the BLAS symbols out of the global namespace (other addons may bring their own BLAS).
  if (void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL)) {
    lib.sgemm = reinterpret_cast<sgemm_fn>(dlsym(h, "cblas_sgemm"));
    lib.set_threads = reinterpret_cast<set_threads_fn>(dlsym(h, "openblas_set_num_threads"));
    auto cfg = reinterpret_cast<get_config_fn>(dlsym(h, "openblas_get_config"));
    if (!lib.sgemm) {
      lib.blas_reason = "libopenblas.so.0 has no cblas_sgemm";
    } else {
      const char* c = cfg ? cfg() : nullptr;  // "OpenBLAS 0.3.21 DYNAMIC_ARCH … Haswell …"
      lib.blas_name = c && std::strncmp(c, "OpenBLAS", 8) == 0 ? std::string(c) : std::string("OpenBLAS ") + (c ? c : "");
      if (lib.set_threads) lib.set_threads(num_threads());
    }
  } else {
    lib.blas_reason = "libopenblas.so.0 not loadable: " + dl_error();
  }
  if (void* h = dlopen("liblapacke.so.3", RTLD_NOW | RTLD_LOCAL)) {
    lib.dgesdd = reinterpret_cast<dgesdd_fn>(dlsym(h, "LAPACKE_dgesdd"));
    lib.dsyevd = reinterpret_cast<dsyevd_fn>(dlsym(h, "LAPACKE_dsyevd"));
    if (!lib.dgesdd || !lib.dsyevd) {
      lib.dgesdd = nullptr;
      lib.dsyevd = nullptr;
      lib.lapack_reason = "liblapacke.so.3 lacks LAPACKE_dgesdd/LAPACKE_dsyevd";
    }
  } else {
    lib.lapack_reason = "liblapacke.so.3 not loadable: " + dl_error();
  }
  return lib;
}

BlasLib& blas() {
  static BlasLib lib = load();
  return lib;
}

}  // namespace mla

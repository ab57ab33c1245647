// Run-time loading of OpenBLAS (libopenblas.so.0) and LAPACKE (liblapacke.so.3) with dlopen, so the addon builds
// with g++ alone and uses the libraries when the machine has them (Debian: libopenblas0, liblapacke).
// Only the prototypes used are declared. env MLA_NO_BLAS=1 skips loading both (own kernels, no LAPACK).
#pragma once

#include <string>

namespace mla {

// CBLAS enum values (cblas.h): row-major layout and transposition flags.
enum { kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112 };
// LAPACKE matrix layout (lapacke.h).
enum { kLapackRowMajor = 101 };

using sgemm_fn = void (*)(int order, int transA, int transB, int m, int n, int k, float alpha, const float* a,
                          int lda, const float* b, int ldb, float beta, float* c, int ldc);
using dgesdd_fn = int (*)(int layout, char jobz, int m, int n, double* a, int lda, double* s, double* u, int ldu,
                          double* vt, int ldvt);
using dsyevd_fn = int (*)(int layout, char jobz, char uplo, int n, double* a, int lda, double* w);
using set_threads_fn = void (*)(int);
using get_config_fn = char* (*)();

struct BlasLib {
  sgemm_fn sgemm = nullptr;             // cblas_sgemm when OpenBLAS loaded
  set_threads_fn set_threads = nullptr; // openblas_set_num_threads
  dgesdd_fn dgesdd = nullptr;           // LAPACKE_dgesdd when liblapacke loaded
  dsyevd_fn dsyevd = nullptr;           // LAPACKE_dsyevd
  std::string blas_name;                // "OpenBLAS 0.3.21 …" or "" when absent
  std::string blas_reason;              // why it is absent
  std::string lapack_reason;
  bool use_blas = true;                 // run-time switch (bench compares own kernels with OpenBLAS in one run)
};

/** The libraries, loaded on first use (thread-safe static initialisation). */
BlasLib& blas();

/** cblas_sgemm is loaded and enabled. */
inline bool blas_active() { return blas().sgemm != nullptr && blas().use_blas; }

}  // namespace mla

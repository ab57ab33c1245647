// Linear algebra in double through LAPACKE (dlopen, see blas.h): thin SVD (dgesdd) and the symmetric
// eigendecomposition (dsyevd), row-major. There is no own fallback here: without liblapacke the TypeScript provider
// (src/linalg/ts-linalg.ts) is used, and these entry points report that LAPACK is unavailable.
// Shape legend: m rows, n columns, k = min(m, n).
#include "linalg.h"

#include <algorithm>
#include <vector>

#include "blas.h"
#include "common.h"

namespace mla {

bool lapack_available() { return blas().dgesdd != nullptr && blas().dsyevd != nullptr; }

/** a (m, n) → u (m, k), s (k) descending, vt (k, n); a is not modified. */
void svd(const double* a, int64_t m, int64_t n, double* u, double* s, double* vt) {
  MLA_CHECK(lapack_available(), "svd: LAPACKE is not loaded (" + blas().lapack_reason + ")");
  MLA_CHECK(m < (int64_t{1} << 31) && n < (int64_t{1} << 31), "svd: matrix too large for 32-bit LAPACK");
  const int64_t k = std::min(m, n);
  if (k == 0) return;
  std::vector<double> work(a, a + m * n);  // dgesdd destroys its input
  const int info = blas().dgesdd(kLapackRowMajor, 'S', static_cast<int>(m), static_cast<int>(n), work.data(),
                                 static_cast<int>(n), s, u, static_cast<int>(k), vt, static_cast<int>(n));
  MLA_CHECK(info >= 0, "svd: LAPACKE_dgesdd argument " + std::to_string(-info) + " invalid");
  MLA_CHECK(info == 0, "svd: LAPACKE_dgesdd did not converge (info " + std::to_string(info) + ")");
}

/** a (n, n) symmetric → values (n) descending, vectors (n, n) with column j the eigenvector of values[j]. */
void eigh(const double* a, int64_t n, double* values, double* vectors) {
  MLA_CHECK(lapack_available(), "eigh: LAPACKE is not loaded (" + blas().lapack_reason + ")");
  MLA_CHECK(n < (int64_t{1} << 31), "eigh: matrix too large for 32-bit LAPACK");
  if (n == 0) return;
  std::vector<double> work(a, a + n * n), w(static_cast<size_t>(n));
  const int info = blas().dsyevd(kLapackRowMajor, 'V', 'U', static_cast<int>(n), work.data(), static_cast<int>(n),
                                 w.data());
  MLA_CHECK(info >= 0, "eigh: LAPACKE_dsyevd argument " + std::to_string(-info) + " invalid");
  MLA_CHECK(info == 0, "eigh: LAPACKE_dsyevd did not converge (info " + std::to_string(info) + ")");
  // LAPACK returns ascending order; reverse to descending.
  for (int64_t j = 0; j < n; j++) {
    values[j] = w[n - 1 - j];
    for (int64_t i = 0; i < n; i++) vectors[i * n + j] = work[i * n + (n - 1 - j)];
  }
}

}  // namespace mla

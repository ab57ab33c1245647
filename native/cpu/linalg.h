// LAPACK-backed linear algebra entry points (linalg.cpp); addon.cpp exposes them as svd() and eigh().
#pragma once

#include <cstdint>

namespace mla {

bool lapack_available();
void svd(const double* a, int64_t m, int64_t n, double* u, double* s, double* vt);
void eigh(const double* a, int64_t n, double* values, double* vectors);

}  // namespace mla

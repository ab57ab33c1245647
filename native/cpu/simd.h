// Run-time choice between the AVX2 and AVX-512 variants of the hot kernels. The addon is built with -march=native
// (the AVX2 paths, MLA_AVX2 in common.h); the AVX-512 variants are compiled with target attributes (MLA_AVX512_FN),
// so every x86-64 build contains them and calls them only when the CPU reports AVX-512 F/BW/VL/DQ. env MLA_SIMD=avx2
// (read once) or the addon's setSimd('avx2') forces the AVX2 variants: the conformance suite runs both on one box.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#define MLA_X86 1
#define MLA_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
// A lambda inside an MLA_AVX512_FN function needs the same target to use (and inline) its intrinsics.
#define MLA_AVX512_LAMBDA __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"), always_inline))
#else
#define MLA_X86 0
#endif

namespace mla {

/** The CPU has AVX-512 F/BW/VL/DQ (and the build targets x86-64). */
bool simd_avx512_supported();

/** Kernels take their AVX-512 variants now (supported, and not switched off). */
extern bool g_simd_avx512;
inline bool simd_avx512() { return g_simd_avx512; }

/** Switch the AVX-512 variants on (when supported) or off; returns whether they are on. Not thread-safe against
 *  running kernels: call it between ops. */
bool set_simd_avx512(bool on);

/** "avx512" or "avx2+fma" or "scalar": the variant family in effect. */
const char* simd_name();

}  // namespace mla

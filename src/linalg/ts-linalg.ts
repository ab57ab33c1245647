// The plain-TypeScript LinalgProvider: float64 SVD and symmetric eigendecomposition with no native dependency.
// It is the specification the LAPACK-backed providers are tested against, and what the ref backend (and any backend
// without LAPACK) hands the converter.

import type { LinalgProvider } from '../tensor/backend.js';
import { eigh } from './eigh.js';
import { svd } from './svd.js';

/** Golub–Kahan–Reinsch SVD (svd.ts) and tred2/tql2 eigendecomposition (eigh.ts), single-threaded float64. */
export const tsLinalg: LinalgProvider = { name: 'ts', svd, eigh };

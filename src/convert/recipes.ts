// The seed papers' conversion recipes as presets of the individual options, so a user can run each published method
// exactly as written and compare it with ours (the defaults) at the same KV budget. Ranks, rope dims and everything
// not listed stay the caller's (--kv-ratio / --kv-rank, --rope-dim, --q-rank, --latent-norm, --keep-layers).
//   x-ecomla  X-EcoMLA (arXiv 2503.11132): the lowest-frequency rope pairs, k_rope = mean of the kv heads' keys on
//             them, those dims removed from the no-rope path (d_n = D − d_r), one SVD of the [K_nope; V] weights,
//             no calibration (data-free).
//   mha2mla   MHA2MLA (arXiv 2502.14837): the rope pairs with the largest Σ_h ‖q_{h,j}‖·‖k_{g(h),j}‖ (the 2-norm rule,
//             from calibration), their dims removed from the no-rope path, joint SVD of the [K_nope; V] weights. MHA2MLA
//             keeps a rope key per kv head; the DeepSeek layout has one shared rope key, the mean over kv heads.
//   transmla  TransMLA (arXiv 2502.07864): RoRoPE (per-frequency PCA of the keys across kv heads; the principal
//             component takes the rope key, the rest stays in the no-rope path) and BKV-PCA (PCA of the balanced
//             [K_nope; V] activations). FreqFold (treating adjacent frequencies as one) is not applied: freqfold 1.
// Ours (no --recipe) adds to transmla the mean rotation for dropped pairs and the shared exportable pair choice.

import type { ConvertOptions } from './convert.js';

export type Recipe = 'x-ecomla' | 'mha2mla' | 'transmla';
export const RECIPES: readonly Recipe[] = ['x-ecomla', 'mha2mla', 'transmla'];

/** The options a recipe fixes (a flag setting one of them alongside --recipe is refused: it would not be the recipe). */
export type RecipeFields = Pick<ConvertOptions, 'ropeMethod' | 'basis' | 'nopeInit' | 'nopeKeys'>;

export const RECIPE_OPTIONS: Record<Recipe, Required<RecipeFields>> = {
  'x-ecomla': { ropeMethod: 'ecomla', basis: 'weight', nopeInit: 'identity', nopeKeys: 'drop' },
  mha2mla: { ropeMethod: 'mha2mla', basis: 'weight', nopeInit: 'identity', nopeKeys: 'drop' },
  transmla: { ropeMethod: 'transmla', basis: 'activation', nopeInit: 'identity', nopeKeys: 'residual' },
};

export function isRecipe(s: string): s is Recipe {
  return (RECIPES as readonly string[]).includes(s);
}

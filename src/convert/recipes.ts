// The seed papers' conversion recipes as presets of the individual options, so a user can run each published method
// exactly as written and compare it with ours (the defaults) at the same KV budget. Ranks, rope dims and everything
// not listed stay the caller's (--kv-ratio / --kv-rank, --rope-dim, --q-rank, --latent-norm, --keep-layers).
//   x-ecomla  X-EcoMLA (arXiv 2503.11132): the lowest-frequency rope pairs, k_rope = mean of the kv heads' keys on
//             them, those dims removed from the no-rope path (d_n = D − d_r), one SVD of the [K_nope; V] weights,
//             no calibration (data-free).
//   mha2mla   MHA2MLA (arXiv 2502.14837): the rope pairs with the largest Σ_h ‖q_{h,j}‖·‖k_{g(h),j}‖ (the 2-norm rule,
//             from calibration), their dims removed from the no-rope path, joint SVD of the [K_nope; V] weights. MHA2MLA
//             keeps a rope key per kv head; the DeepSeek layout has one shared rope key, the mean over kv heads.
//   transmla  TransMLA (arXiv 2502.07864; fxmeng/TransMLA@9c0d2545): RoRoPE with FreqFold (per fold of F adjacent
//             frequencies a PCA of the keys across kv heads and the fold; each fold's top F·d_r/D components take
//             the rope key, the rest stays in the no-rope path; freqfold.ts), F chosen as its converter's default
//             `--freqfold auto` does (c = D/d_r, 2c, … while the RoRoPE-only model improves; here calibration KL, there
//             WikiText-2 perplexity), and BKV-PCA (PCA of the [K_nope/ratio; V] activations, ratio = mean column
//             norm of the rotated no-rope keys / that of the values, 1 % damping). --freqfold F overrides the fold
//             (its scripts pass 4 or 8). Not as TransMLA: our BKV-PCA statistics are the teacher's hidden states,
//             TransMLA's those of the RoRoPE'd model (its earlier layers already changed).
// Ours (no --recipe) adds to transmla the mean rotation for dropped pairs and the shared exportable pair choice.

import type { ConvertOptions } from './convert.js';

export type Recipe = 'x-ecomla' | 'mha2mla' | 'transmla';
export const RECIPES: readonly Recipe[] = ['x-ecomla', 'mha2mla', 'transmla'];

/** The options a recipe fixes (a flag setting one of them alongside --recipe is refused: it would not be the recipe). */
export type RecipeFields = Pick<ConvertOptions, 'ropeMethod' | 'basis' | 'nopeInit' | 'nopeKeys' | 'kvBalance' | 'freqfold'>;

/** The recipes' options. freqfold is the recipe's default (`--freqfold` may change it: TransMLA's own setting). */
export const RECIPE_OPTIONS: Record<Recipe, Required<RecipeFields>> = {
  'x-ecomla': { ropeMethod: 'ecomla', basis: 'weight', nopeInit: 'identity', nopeKeys: 'drop', kvBalance: 'energy', freqfold: 1 },
  mha2mla: { ropeMethod: 'mha2mla', basis: 'weight', nopeInit: 'identity', nopeKeys: 'drop', kvBalance: 'energy', freqfold: 1 },
  transmla: { ropeMethod: 'transmla', basis: 'activation', nopeInit: 'identity', nopeKeys: 'residual', kvBalance: 'transmla', freqfold: 'auto' },
};

export function isRecipe(s: string): s is Recipe {
  return (RECIPES as readonly string[]).includes(s);
}

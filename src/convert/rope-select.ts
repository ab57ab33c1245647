// Which rotary components the converted layer keeps in its one shared rope key (the rest of each key goes to the
// compressed no-rope path). A component is a rope pair j of the teacher (its original frequency is kept) and a unit
// mixing vector u over the Hkv kv heads: k_rope = Σ_g u[g]·k_{g,j}, and query head h uses u[g(h)]·q_{h,j}.
// Because one orthogonal mixing across heads at a fixed frequency commutes with that frequency's rotation, keeping
// every (j, u) of an orthonormal set per frequency is exact (TransMLA's GQA ⊂ MLA equivalence).
//   ecomla   X-EcoMLA: the lowest-frequency d_r/2 pairs, u uniform (k_rope = mean of the kv heads).
//   mha2mla  MHA2MLA's 2-norm rule: pairs ranked by Σ_h ‖q_{h,j}‖·‖k_{g(h),j}‖ on calibration data, u uniform.
//   transmla TransMLA's RoRoPE: per-frequency PCA of the keys across kv heads; components ranked by
//            sqrt(key energy · query energy) along them, so one shared key carries the most attention energy.
// Two ways to choose:
//   free    (selectRope) each layer ranks its own (pair, u) components; a pair may be kept more than once. Best
//           for the native format, but the layers then disagree on frequencies and no stock engine can say that.
//   shared  (sharedPairs + componentFor) every layer keeps the SAME pairs, one component per pair (TransMLA's
//           principal component per frequency), and the pair set is chosen among arithmetic runs j0, j0+s, … whose
//           teacher frequencies an engine can express (a geometric run: one rope_theta and a linear factor); the run
//           with the largest summed per-layer score wins. Stock exports are then exact.
// Legend: C hidden, H heads, Hkv kv heads, D head dim, Dr rope dims, L layers, n = D/2 pairs.

import type { RopePairing } from '../tensor/ops.js';
import type { LinalgProvider } from '../tensor/backend.js';
import { kvHeadOf, pairRows } from './heads.js';

export type RopeMethod = 'ecomla' | 'mha2mla' | 'transmla';
export const ROPE_METHODS: readonly RopeMethod[] = ['ecomla', 'mha2mla', 'transmla'];

export interface RopeComponent {
  /** Teacher rope pair index (its frequency is kept). */
  pair: number;
  /** (Hkv) unit mixing vector over kv heads. */
  u: Float64Array;
  /** Importance used for ranking (larger is kept first). */
  score: number;
  /** FreqFold (freqfold.ts): the fold's teacher pairs u ranges over, u[g·F + f] for pair sources[f] (Hkv·F
   *  entries); absent: u[g] over the kv heads' pair `pair`. */
  sources?: number[];
}

/** A component's terms: key row pair `pair` of kv head g enters with weight w (Σ w² = 1). */
export function componentTerms(c: RopeComponent, Hkv: number): { g: number; pair: number; w: number }[] {
  const src = c.sources ?? [c.pair];
  const F = src.length;
  const out: { g: number; pair: number; w: number }[] = [];
  for (let g = 0; g < Hkv; g++) for (let f = 0; f < F; f++) out.push({ g, pair: src[f]!, w: c.u[g * F + f]! });
  return out;
}

export interface RopeEnergies {
  /** keyMoment[j] (Hkv, Hkv): E[Σ_c k_{g,j,c} k_{g',j,c}] over the pair's two rows. */
  keyMoment: Float64Array[];
  /** queryEnergy[h·(D/2) + j]: E‖q_{h,j}‖². */
  queryEnergy: Float64Array;
  /** (Hkv·D)² second moment of the keys (FreqFold's fold moments and TransMLA's balance read it). */
  kMoment: Float64Array;
}

export interface RopeSelectInput {
  method: RopeMethod;
  /** Kept pairs: Dr/2. */
  count: number;
  H: number;
  Hkv: number;
  D: number;
  energies: RopeEnergies;
  linalg: LinalgProvider;
}

/** Energies of every rope pair from the second moments of q (H·D rows) and k (Hkv·D rows). */
export function ropeEnergies(
  pairing: RopePairing, H: number, Hkv: number, D: number, qDiag: Float64Array, kMoment: Float64Array,
): RopeEnergies {
  const n = D / 2;
  const KD = Hkv * D;
  const keyMoment: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const M = new Float64Array(Hkv * Hkv);
    const rows = pairRows(pairing, D, j);
    for (let g = 0; g < Hkv; g++) {
      for (let g2 = 0; g2 < Hkv; g2++) {
        let s = 0;
        for (const r of rows) s += kMoment[(g * D + r) * KD + g2 * D + r]!;
        M[g * Hkv + g2] = s;
      }
    }
    keyMoment.push(M);
  }
  const queryEnergy = new Float64Array(H * n);
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < n; j++) {
      const [a, b] = pairRows(pairing, D, j);
      queryEnergy[h * n + j] = qDiag[h * D + a]! + qDiag[h * D + b]!;
    }
  }
  return { keyMoment, queryEnergy, kMoment };
}

/** Query energy of pair j along mixing u: Σ_h u[g(h)]² E‖q_{h,j}‖². */
function queryAlong(inp: RopeSelectInput, j: number, u: Float64Array): number {
  const n = inp.D / 2;
  let s = 0;
  for (let h = 0; h < inp.H; h++) s += u[kvHeadOf(h, inp.H, inp.Hkv)]! ** 2 * inp.energies.queryEnergy[h * n + j]!;
  return s;
}

/** The kept components, ordered by pair (high frequency first) then by importance. */
export function selectRope(inp: RopeSelectInput): RopeComponent[] {
  const { H, Hkv, D, count, energies } = inp;
  const n = D / 2;
  const uniform = Float64Array.from({ length: Hkv }, () => 1 / Math.sqrt(Hkv));
  let candidates: RopeComponent[];
  switch (inp.method) {
    case 'ecomla':
      // Lowest frequencies = the last pairs; score only orders them.
      candidates = Array.from({ length: n }, (_, j) => ({ pair: j, u: uniform, score: j }));
      break;
    case 'mha2mla':
      candidates = Array.from({ length: n }, (_, j) => {
        let s = 0;
        for (let h = 0; h < H; h++) {
          const g = kvHeadOf(h, H, Hkv);
          s += Math.sqrt(energies.queryEnergy[h * n + j]! * energies.keyMoment[j]![g * Hkv + g]!);
        }
        return { pair: j, u: uniform, score: s };
      });
      break;
    case 'transmla':
      candidates = [];
      for (let j = 0; j < n; j++) {
        const { values, vectors } = inp.linalg.eigh(energies.keyMoment[j]!, Hkv);
        for (let m = 0; m < Hkv; m++) {
          const u = Float64Array.from({ length: Hkv }, (_, g) => vectors[g * Hkv + m]!);
          const keyE = Math.max(values[m]!, 0);
          candidates.push({ pair: j, u, score: Math.sqrt(keyE * queryAlong(inp, j, u)) });
        }
      }
      break;
    default: {
      const never: never = inp.method;
      throw new Error(`unknown rope method ${String(never)}`);
    }
  }
  if (count > candidates.length) {
    throw new Error(`rope: ${count} pairs requested but ${inp.method} offers ${candidates.length} (rope dim ≤ ${2 * candidates.length})`);
  }
  const kept = candidates
    .map((c, i) => ({ c, i }))
    .sort((a, b) => b.c.score - a.c.score || a.i - b.i)
    .slice(0, count)
    .map((x) => x.c);
  return kept.sort((a, b) => a.pair - b.pair || b.score - a.score);
}

/**
 * Score of every rope pair j for the shared choice (n values, larger is better): ecomla j (lowest frequencies
 * first), mha2mla Σ_h ‖q_{h,j}‖·‖k_{g(h),j}‖, transmla sqrt(key energy · query energy) along the pair's principal
 * component (the most a single component of that frequency can carry).
 */
export function pairScores(inp: Omit<RopeSelectInput, 'count'>): number[] {
  const { H, Hkv, D, energies } = inp;
  const n = D / 2;
  return Array.from({ length: n }, (_, j) => {
    switch (inp.method) {
      case 'ecomla':
        return j;
      case 'mha2mla': {
        let s = 0;
        for (let h = 0; h < H; h++) {
          const g = kvHeadOf(h, H, Hkv);
          s += Math.sqrt(energies.queryEnergy[h * n + j]! * energies.keyMoment[j]![g * Hkv + g]!);
        }
        return s;
      }
      case 'transmla':
        return componentFor(inp, j).score;
      default: {
        const never: never = inp.method;
        throw new Error(`unknown rope method ${String(never)}`);
      }
    }
  });
}

/** The one component a shared choice keeps for pair j: transmla's principal direction of the keys across kv heads
 *  at that frequency, the uniform mixing (mean of the kv heads) for ecomla and mha2mla. */
export function componentFor(inp: Omit<RopeSelectInput, 'count'>, j: number): RopeComponent {
  const Hkv = inp.Hkv;
  if (inp.method !== 'transmla') return { pair: j, u: Float64Array.from({ length: Hkv }, () => 1 / Math.sqrt(Hkv)), score: 0 };
  const { values, vectors } = inp.linalg.eigh(inp.energies.keyMoment[j]!, Hkv);
  let m = 0;
  for (let i = 1; i < Hkv; i++) if (values[i]! > values[m]!) m = i;
  const u = Float64Array.from({ length: Hkv }, (_, g) => vectors[g * Hkv + m]!);
  return { pair: j, u, score: Math.sqrt(Math.max(values[m]!, 0) * queryAlong({ ...inp, count: 0 }, j, u)) };
}

export interface SharedChoice {
  /** Kept teacher pairs, ascending (an arithmetic run j0 + s·i). */
  pairs: number[];
  /** Whether their frequencies satisfy the engine's rule (`accept`); false: the nearest run was taken. */
  exact: boolean;
  /** Runs that satisfied the rule (for the report). */
  acceptedRuns: number;
}

/**
 * The pair set every layer keeps: among arithmetic runs {j0 + s·i, i < count} inside 0..n−1, those whose teacher
 * frequencies `accept` (the target engine's rope rule) takes; the one with the largest Σ_layers score_l(j)/Σ_j' score_l(j')
 * (each layer's scores normalised, so no layer dominates). When no run is accepted: the run whose frequencies are
 * nearest a geometric run (max |log f − fit|), ties by score; `exact` false says so.
 * scores: (L, n) per-layer pair scores.
 */
export function sharedPairs(scores: number[][], count: number, invFreq: number[], accept: (freqs: number[]) => boolean): SharedChoice {
  const n = invFreq.length;
  if (count > n) throw new Error(`rope: ${count} pairs requested but the head has ${n}`);
  const norm = scores.map((row) => {
    const t = row.reduce((a, b) => a + Math.max(b, 0), 0);
    return row.map((x) => (t > 0 ? Math.max(x, 0) / t : 1 / n));
  });
  const runs: { pairs: number[]; score: number }[] = [];
  for (let s = 1; s === 1 || (count - 1) * s < n; s++) {
    for (let j0 = 0; j0 + (count - 1) * s < n; j0++) {
      const pairs = Array.from({ length: count }, (_, i) => j0 + s * i);
      const score = norm.reduce((a, row) => a + pairs.reduce((b, j) => b + row[j]!, 0), 0);
      runs.push({ pairs, score });
    }
    if (count === 1) break;
  }
  const ok = runs.filter((r) => accept(r.pairs.map((j) => invFreq[j]!)));
  if (ok.length > 0) {
    const best = ok.reduce((a, b) => (b.score > a.score + 1e-12 ? b : a));
    return { pairs: best.pairs, exact: true, acceptedRuns: ok.length };
  }
  const dev = (r: { pairs: number[] }): number => geometricDeviation(r.pairs.map((j) => invFreq[j]!));
  const best = runs.reduce((a, b) => {
    const da = dev(a);
    const db = dev(b);
    return db < da - 1e-12 || (Math.abs(db - da) <= 1e-12 && b.score > a.score) ? b : a;
  });
  return { pairs: best.pairs, exact: false, acceptedRuns: 0 };
}

/** Least-squares geometric run through frequencies: log f_i ≈ a + b·i (moves every pair a little). */
export function leastSquaresGeometric(invFreq: number[]): number[] {
  const d = invFreq.length;
  if (d === 1) return invFreq.slice();
  const y = invFreq.map((f) => Math.log(f));
  const xm = (d - 1) / 2;
  const ym = y.reduce((a, b) => a + b, 0) / d;
  let sxy = 0;
  let sxx = 0;
  y.forEach((v, i) => {
    sxy += (i - xm) * (v - ym);
    sxx += (i - xm) ** 2;
  });
  const b = sxy / sxx;
  return y.map((_, i) => Math.exp(ym + b * (i - xm)));
}

/**
 * The geometric run g_i = f_a·(f_b/f_a)^((i−a)/(b−a)) through two of the frequencies that keeps the most of them
 * exactly (a llama3-bent band moves only the bent pairs), ties broken by Σ (log f − log g)². Exact on a geometric run.
 */
export function nearestGeometric(invFreq: number[]): number[] {
  const d = invFreq.length;
  if (d === 1) return invFreq.slice();
  const y = invFreq.map((f) => Math.log(f));
  let best: { hits: number; sse: number; g: number[] } | null = null;
  for (let a = 0; a < d; a++) {
    for (let b = a + 1; b < d; b++) {
      const slope = (y[b]! - y[a]!) / (b - a);
      const g = y.map((_, i) => y[a]! + slope * (i - a));
      let hits = 0;
      let sse = 0;
      g.forEach((v, i) => {
        const e = v - y[i]!;
        if (Math.abs(e) <= 1e-9) hits++;
        sse += e * e;
      });
      if (!best || hits > best.hits || (hits === best.hits && sse < best.sse - 1e-15)) best = { hits, sse, g };
    }
  }
  return best!.g.map((v) => Math.exp(v));
}

/** The candidate geometric runs an export tries (it keeps the one whose measured logit error is smaller). */
export function geometricCandidates(invFreq: number[]): number[][] {
  return [nearestGeometric(invFreq), leastSquaresGeometric(invFreq)];
}

/** min over the candidates of max_i |log f_i − log g_i| (0 for a geometric run). */
export function geometricDeviation(invFreq: number[]): number {
  return Math.min(...geometricCandidates(invFreq).map((g) => Math.max(0, ...invFreq.map((f, i) => Math.abs(Math.log(f) - Math.log(g[i]!))))));
}

/** Whether kept frequencies form a geometric run f_i = f_0·ρ^i (expressible as a base and a linear scale). */
export function ropeExpressibility(invFreq: number[]): { geometric: boolean; base?: number; factor?: number; why?: string } {
  const d = invFreq.length;
  if (d === 0) return { geometric: false, why: 'no rope dims' };
  const f0 = invFreq[0]!;
  if (d === 1) return { geometric: true, base: 10000, factor: 1 / f0 };
  const rho = invFreq[1]! / f0;
  for (let i = 1; i < d; i++) {
    if (Math.abs(invFreq[i]! - f0 * rho ** i) > 1e-9 * f0) {
      return { geometric: false, why: 'the kept frequencies are not one geometric run (an arbitrary selection, or a repeated pair)' };
    }
  }
  if (!(rho < 1 && rho > 0)) return { geometric: false, why: 'frequencies do not decrease' };
  // DeepSeek computes base^(−2i/Dr) / factor with Dr = 2d rope dims.
  return { geometric: true, base: rho ** -d, factor: 1 / f0 };
}

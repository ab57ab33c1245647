// Conversion with cross-layer latents (xKV, `mla convert --share-latent G`): groups of G adjacent converted layers
// share one latent cache. The group's first layer j keeps an MLA latent c = A x_j (its own attention input); every
// later layer l reads that c through its own up-projection B_l, with its own query and rope key (model/attention/xkv.ts).
//
// Initialisation, a joint factorisation across the group in the first layer's activation metric:
//   1. each layer's no-rope keys and values Y_l = W_l x_l come from an ordinary conversion at full rank (exact:
//      W_l = kv_b_l · kv_a_l, with every rope / no-rope choice of the options);
//   2. a later layer's targets are predicted from x_j by least squares on calibration data:
//      M_l = W_l Σ_lj (Σ_jj + εI)⁻¹, Σ_lj = E[x_l x_jᵀ] (the cross moments, collected here); M_j = W_j;
//   3. one PCA of the stacked targets z = [M_j; M_l; …] x_j (keys balanced against values per layer as BKV-PCA
//      does): with Σ_jj = L Lᵀ and the eigenvectors v_r of Lᵀ MᵀM L, U_r = M L v_r / √λ_r, A = U_Rᵀ M, B = U_R.
// Since E‖W_l x_l − B_l A x_j‖² = E‖W_l x_l − M_l x_j‖² + E‖(M_l − B_l A) x_j‖², this is the best rank-R latent of
// x_j for the whole group (up to the ridge ε); the first term is what no latent of x_j can carry.
// The KV budget: a group of g layers gets the rank Σ r_l of its layers' planned ranks, so the group caches
// Σ r_l + g·Dr values per token, exactly what g plain MLA layers at those ranks cache (equal bytes).
// Legend: C hidden, n = C (+1 with biases: x augmented by a constant 1), H heads, Hkv kv heads, Dn/Dv no-rope key /
// value dims, m_l = Hkv·(Dn+Dv) target rows of layer l (one per kv head), R group rank, Dr rope dims.

import { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../autograd/var.js';
import { tidy } from '../tensor/storage.js';
import type { Model } from '../model/model.js';
import type { Backend } from '../tensor/backend.js';
import { forward } from '../model/forward.js';
import { layerPrefix } from '../model/weights.js';
import { kvBytesPerToken, kvValuesPerToken, type LayerAttention, type MlaAttention, type ModelConfig, type XkvAttention } from '../model/config.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError } from '../errors.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { calibrationSequences, collectStats, crossMoment, matmulF64, type LayerStats } from './calibrate.js';
import { convert, planRanks, type ConvertGiven, type ConvertOptions, type ConvertResult, type LayerReport } from './convert.js';
import { energyKept } from './basis.js';
import { f64, kvHeadOf } from './heads.js';
import { teacherLayer } from './kinds.js';

/** Groups of up to G adjacent converted layers (a kept layer ends a group; the last group of a run may be shorter). */
export function latentGroups(convertSet: boolean[], G: number): number[][] {
  const groups: number[][] = [];
  let cur: number[] = [];
  convertSet.forEach((c, l) => {
    if (!c) {
      if (cur.length) groups.push(cur);
      cur = [];
      return;
    }
    cur.push(l);
    if (cur.length === G) {
      groups.push(cur);
      cur = [];
    }
  });
  if (cur.length) groups.push(cur);
  return groups;
}

/**
 * Cross moments E[x_l x_jᵀ] (C, C) row-major of the attention inputs x = RMSNorm(h) of layers l and j, for each
 * requested pair, over the calibration sequences (the teacher's forward, as calibrate.ts collectStats).
 */
export function crossMoments(model: Model, seqs: number[][], pairs: [number, number][], progress: ProgressSink = silentProgress): Map<string, Float64Array> {
  const { config: cfg, be } = model;
  const C = cfg.hiddenSize;
  const out = new Map<string, Float64Array>(pairs.map(([l, j]) => [`${l},${j}`, new Float64Array(C * C)]));
  let n = 0;
  noGrad(() => {
    for (const seq of seqs) tidy(() => {
      // Each layer's attention input RMSNorm(h) (T, C), copied out of the forward's layer scope (which frees it).
      const xs: (Float32Array | Float64Array)[] = [];
      forward(model, Int32Array.from(seq), 1, seq.length, { hiddenOnly: true, onAttentionInput: (l, xv) => { xs[l] = xv.value.data.slice(); } });
      const x = (l: number) => new Tensor([seq.length, C], xs[l]!); // (T, C)
      for (const [l, j] of pairs) {
        const m = be.run('matmul', [x(l), x(j)], { transA: true, transB: false })[0]; // (C, C)
        const acc = out.get(`${l},${j}`)!;
        for (let i = 0; i < C * C; i++) acc[i]! += m.data[i]!;
      }
      n += seq.length;
      progress.tick(1);
    });
  });
  progress.end();
  for (const acc of out.values()) for (let i = 0; i < acc.length; i++) acc[i]! /= n;
  return out;
}

/** A converted MLA layer's targets: per kv head the rows [k_nope (Dn) | v (Dv)] of W = kv_b · kv_a (and bias). */
interface LayerTargets {
  l: number;
  attn: MlaAttention;
  Hkv: number;
  W: Float64Array; // (m, n): bias as the last column when n = C + 1
  m: number;
  alpha: number; // keys divided by α in the PCA (α² = key energy / value energy), scaled back in B
}

/** Work (multiply-adds) above which a product runs on the backend (f32 storage, the backend's accumulation) instead
 *  of plain f64 loops: exact enough for an initialisation, and minutes instead of hours at a 1B model's hidden size. */
const BACKEND_WORK = 1e8;

/** Row-major product of (r, k) and (k, c): f64 loops for small products, the backend's matmul for large ones. */
function mm(be: Backend, a: Float64Array, r: number, k: number, b: Float64Array, c: number): Float64Array {
  if (r * k * c > BACKEND_WORK) return matmulF64(be, a, r, k, b, k, c, false, false);
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let t = 0; t < k; t++) {
      const v = a[i * k + t]!;
      if (v === 0) continue;
      const o = i * c;
      const bo = t * c;
      for (let s = 0; s < c; s++) out[o + s]! += v * b[bo + s]!;
    }
  }
  return out;
}

function transpose(a: Float64Array, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j]!;
  return out;
}

/** E[x' x'ᵀ] of x' = [x; 1] when biased (n = C + 1), else E[x xᵀ]: from a moment, the means of both sides. */
function augmented(S: Float64Array, C: number, n: number, muRow: Float64Array, muCol: Float64Array): Float64Array {
  if (n === C) return S;
  const out = new Float64Array(n * n);
  for (let i = 0; i < C; i++) {
    out.set(S.subarray(i * C, (i + 1) * C), i * n);
    out[i * n + C] = muRow[i]!;
  }
  for (let j = 0; j < C; j++) out[C * n + j] = muCol[j]!;
  out[C * n + C] = 1;
  return out;
}

function targetsOf(model: Model, w: Map<string, Tensor>, l: number, attn: MlaAttention, n: number, st: LayerStats): LayerTargets {
  const cfg = model.config;
  const { hiddenSize: C, numHeads: H } = cfg;
  const Hkv = teacherLayer(cfg.layers[l]!, l).numKvHeads;
  const p = `${layerPrefix(l)}.self_attn`;
  const { kvRank: R, nopeDim: Dn, vDim: Dv } = attn;
  const kva = f64(w.get(`${p}.kv_a_proj_with_mqa.weight`)!);
  const kvb = f64(w.get(`${p}.kv_b_proj.weight`)!);
  const bias = attn.bias ? f64(w.get(`${p}.kv_a_proj_with_mqa.bias`)!) : null;
  const A = new Float64Array(R * n); // latent rows of kv_a, bias as the last column
  for (let r = 0; r < R; r++) {
    A.set(kva.subarray(r * C, (r + 1) * C), r * n);
    if (bias) A[r * n + C] = bias[r]!;
  }
  // One query head per kv head: a fresh conversion repeats the kv head's rows in every head of its group.
  const m = Hkv * (Dn + Dv);
  const Bu = new Float64Array(m * R);
  for (let g = 0; g < Hkv; g++) {
    const h = Array.from({ length: H }, (_, k) => k).find((k) => kvHeadOf(k, H, Hkv) === g)!;
    Bu.set(kvb.subarray(h * (Dn + Dv) * R, (h + 1) * (Dn + Dv) * R), g * (Dn + Dv) * R);
  }
  const W = mm(model.be, Bu, m, R, A, n);
  // Key/value balance as BKV-PCA (basis.ts): energies in the layer's own input metric.
  const S = augmented(st.second, C, n, st.mean, st.mean);
  let eK = 0;
  let eV = 0;
  const WS = mm(model.be, W, m, n, S, n);
  for (let i = 0; i < m; i++) {
    let e = 0;
    for (let c = 0; c < n; c++) e += WS[i * n + c]! * W[i * n + c]!;
    if (i % (Dn + Dv) < Dn) eK += e;
    else eV += e;
  }
  const alpha = eK > 1e-10 * eV && eV > 0 ? Math.sqrt(eK / eV) : 1;
  return { l, attn, Hkv, W, m, alpha };
}

export interface GroupFactors {
  A: Float64Array; // (R, n)
  B: Float64Array[]; // per member (m_l, R), keys scaled back by α_l
  spectrum: Float64Array; // eigenvalues of the stacked targets' covariance, descending
}

/**
 * The joint factorisation of one group (see the header): members[0] is the first layer j; cross.get(l) = E[x'_l x'_jᵀ]
 * (n, n) and Sjj = E[x'_j x'_jᵀ]. Rank R at most n.
 */
export function factorGroup(model: Model, members: LayerTargets[], cross: Map<number, Float64Array>, Sjj: Float64Array, n: number, R: number): GroupFactors {
  const linalg = model.be.linalg;
  const { values, vectors } = linalg.eigh(Sjj, n); // Σ_jj = Q Λ Qᵀ
  const lam = Array.from(values, (v) => Math.max(v, 0));
  const eps = 1e-7 * (lam.reduce((a, b) => a + b, 0) / n || 1); // the ridge: directions the data never visits
  const Q = vectors;
  // Σ_jj⁻¹ (ridge) = Q (Λ + ε)⁻¹ Qᵀ and L = Q Λ^{1/2}.
  const be = model.be;
  const L = new Float64Array(n * n);
  const Qs = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      L[i * n + k] = Q[i * n + k]! * Math.sqrt(lam[k]!);
      Qs[i * n + k] = Q[i * n + k]! / (lam[k]! + eps);
    }
  }
  const inv = mm(be, Qs, n, n, transpose(Q, n, n), n);
  // Stacked targets M (Σ m_l, n), keys divided by α_l.
  const rows = members.reduce((s, t) => s + t.m, 0);
  const M = new Float64Array(rows * n);
  let off = 0;
  members.forEach((t, k) => {
    const Ml = k === 0 ? t.W : mm(be, mm(be, t.W, t.m, n, cross.get(t.l)!, n), t.m, n, inv, n);
    const Dn = t.attn.nopeDim;
    const Dkv = Dn + t.attn.vDim;
    for (let i = 0; i < t.m; i++) {
      const s = i % Dkv < Dn ? 1 / t.alpha : 1;
      for (let c = 0; c < n; c++) M[(off + i) * n + c] = s * Ml[i * n + c]!;
    }
    off += t.m;
  });
  const ML = mm(be, M, rows, n, L, n); // (rows, n)
  const N = mm(be, transpose(ML, rows, n), n, rows, ML, n); // Lᵀ MᵀM L (n, n)
  const e = linalg.eigh(N, n);
  const spectrum = Float64Array.from(e.values, (v) => Math.max(v, 0));
  // U_R = M L V_R / √λ (orthonormal columns): directions with no energy get a zero column (nothing to carry).
  const Vs = new Float64Array(n * R); // V_R / √λ
  for (let r = 0; r < R; r++) {
    const s = spectrum[r]! > 1e-12 * spectrum[0]! ? 1 / Math.sqrt(spectrum[r]!) : 0;
    for (let c = 0; c < n; c++) Vs[c * R + r] = e.vectors[c * n + r]! * s;
  }
  const U = mm(be, ML, rows, n, Vs, R);
  const A = mm(be, transpose(U, rows, R), R, rows, M, n); // (R, n)
  const B: Float64Array[] = [];
  off = 0;
  for (const t of members) {
    const Bl = U.slice(off * R, (off + t.m) * R);
    const Dkv = t.attn.nopeDim + t.attn.vDim;
    for (let i = 0; i < t.m; i++) if (i % Dkv < t.attn.nopeDim) for (let r = 0; r < R; r++) Bl[i * R + r]! *= t.alpha;
    B.push(Bl);
    off += t.m;
  }
  return { A, B, spectrum };
}

/**
 * Convert with cross-layer latents: groups of `groupSize` adjacent converted layers share one latent (see the
 * header). The plan must give ranks (--kv-rank or --kv-ratio); each group gets the sum of its layers' ranks.
 */
export function convertSharedLatent(
  model: Model, tokenizer: Tokenizer | null, opts: ConvertOptions, groupSize: number,
  progress: { calib: ProgressSink; layers: ProgressSink } = { calib: silentProgress, layers: silentProgress },
  given: ConvertGiven = {},
): ConvertResult {
  const cfg = model.config;
  const C = cfg.hiddenSize;
  const H = cfg.numHeads;
  if (!Number.isInteger(groupSize) || groupSize < 2) throw new OptionError('shareLatent', groupSize, 'expected an integer ≥ 2 (layers per shared latent)');
  if (opts.target) throw new OptionError('target', opts.target, 'no engine runs cross-layer latents ({shareLatent}): convert without {target}');
  if (opts.plan.kind !== 'rank' && opts.plan.kind !== 'ratio') {
    throw new OptionError('shareLatent', groupSize, 'takes its budget from {plan.rank} or {plan.ratio} (each group gets the sum of its layers\' ranks)');
  }
  const teacher = cfg.layers.map((a, i) => teacherLayer(a, i));
  const convertSet = cfg.layers.map((_, i) => !opts.keepLayers.includes(i));
  const ropeDim = opts.ropeDim ?? teacher[0]!.headDim / 2;
  const planned = planRanks(cfg, opts.plan, ropeDim, convertSet);
  const groups = latentGroups(convertSet, groupSize);

  // Calibration: the moments of each layer (convert's) and the cross moments of each later member with its first.
  const seqs = calibrationSequences(model, tokenizer, opts.calib, progress.calib);
  const stats = given.stats ?? collectStats(model, seqs, progress.calib);
  const pairs = groups.flatMap((g) => g.slice(1).map((l) => [l, g[0]!] as [number, number]));
  const cross = crossMoments(model, seqs, pairs);

  // 1. Every converted layer at full rank (W_l = kv_b_l · kv_a_l exact), with the options' rope and query choices.
  const full = convert(model, tokenizer, {
    ...opts,
    plan: { kind: 'ranks', ranks: teacher.map((a) => (opts.basis === 'weight' ? Math.min(2 * a.numKvHeads * a.headDim, C) : 2 * a.numKvHeads * a.headDim)) },
    latentNorm: false,
  }, { calib: silentProgress, layers: progress.layers }, { stats, ropePairs: given.ropePairs });
  const w = full.weights;
  const layers: LayerAttention[] = [...full.config.layers];
  const reports: LayerReport[] = full.layers.map((r) => ({ ...r }));
  const biased = teacher.some((a) => a.qkvBias);
  const n = biased ? C + 1 : C;

  for (const g of groups) {
    const R = g.reduce((s, l) => s + planned[l]!, 0);
    const maxR = Math.min(n === C ? C : C + 1, g.reduce((s, l) => s + 2 * teacher[l]!.numKvHeads * teacher[l]!.headDim, 0));
    if (R > maxR) {
      throw new OptionError(opts.plan.kind === 'ratio' ? 'plan.ratio' : 'plan.rank', opts.plan.kind === 'ratio' ? opts.plan.ratio : undefined,
        `gives layers ${g.join(', ')} a shared rank of ${R}, above the maximum ${maxR} (the hidden size${n > C ? ' + 1' : ''}, or the group's key and value dims)`);
    }
    const j = g[0]!;
    const members = g.map((l) => targetsOf(model, w, l, full.config.layers[l] as MlaAttention, n, stats[l]!));
    const Sjj = augmented(stats[j]!.second, C, n, stats[j]!.mean, stats[j]!.mean);
    const crossAug = new Map(g.slice(1).map((l) => [l, augmented(cross.get(`${l},${j}`)!, C, n, stats[l]!.mean, stats[j]!.mean)]));
    const f = factorGroup(model, members, crossAug, Sjj, n, R);
    const kept = energyKept(f.spectrum, R);
    members.forEach((t, k) => {
      const l = t.l;
      const p = `${layerPrefix(l)}.self_attn`;
      const { ropeDim: Dr, nopeDim: Dn, vDim: Dv } = t.attn;
      // kv_b per query head: the rows of its kv head.
      const kvb = new Float64Array(H * (Dn + Dv) * R);
      for (let h = 0; h < H; h++) {
        const gi = kvHeadOf(h, H, t.Hkv);
        kvb.set(f.B[k]!.subarray(gi * (Dn + Dv) * R, (gi + 1) * (Dn + Dv) * R), h * (Dn + Dv) * R);
      }
      w.set(`${p}.kv_b_proj.weight`, new Tensor([H * (Dn + Dv), R], Float32Array.from(kvb)));
      const kva = f64(w.get(`${p}.kv_a_proj_with_mqa.weight`)!);
      const ropeRows = kva.slice(t.attn.kvRank * C, (t.attn.kvRank + Dr) * C);
      const bias = t.attn.bias ? f64(w.get(`${p}.kv_a_proj_with_mqa.bias`)!) : null;
      const ropeBias = bias ? bias.slice(t.attn.kvRank) : null;
      if (k === 0) {
        const a = new Float64Array((R + Dr) * C);
        const ab = new Float64Array(R + Dr);
        for (let r = 0; r < R; r++) {
          a.set(f.A.subarray(r * n, r * n + C), r * C);
          if (n > C) ab[r] = f.A[r * n + C]!;
        }
        a.set(ropeRows, R * C);
        w.set(`${p}.kv_a_proj_with_mqa.weight`, new Tensor([R + Dr, C], Float32Array.from(a)));
        if (ropeBias) {
          ab.set(ropeBias, R);
          w.set(`${p}.kv_a_proj_with_mqa.bias`, new Tensor([R + Dr], Float32Array.from(ab)));
        }
        if (opts.latentNorm) {
          // The latent's mean RMS on calibration data (as convert.ts), so the norm starts near the identity.
          const Al = a.slice(0, R * C);
          const mo = crossMoment(model, stats[j]!, Al, n > C ? ab.slice(0, R) : null, R, Al, n > C ? ab.slice(0, R) : null, R);
          let tr = 0;
          for (let r = 0; r < R; r++) tr += mo[r * R + r]!;
          w.set(`${p}.kv_a_layernorm.weight`, new Tensor([R], new Float32Array(R).fill(Math.sqrt(tr / R) || 1)));
        }
        layers[l] = { ...t.attn, kvRank: R, latentNorm: opts.latentNorm };
      } else {
        w.delete(`${p}.kv_a_proj_with_mqa.weight`);
        w.delete(`${p}.kv_a_proj_with_mqa.bias`);
        w.set(`${p}.k_rope_proj.weight`, new Tensor([Dr, C], Float32Array.from(ropeRows)));
        if (ropeBias) w.set(`${p}.k_rope_proj.bias`, new Tensor([Dr], Float32Array.from(ropeBias)));
        const x: XkvAttention = {
          kind: 'xkv', source: j, kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv, qRank: t.attn.qRank, bias: t.attn.bias, ropeInvFreq: t.attn.ropeInvFreq,
        };
        layers[l] = x;
      }
      reports[l] = {
        ...reports[l]!, kind: layers[l]!.kind, kvRank: R, energyKept: kept, spectrum: Array.from(f.spectrum), kvValuesPerToken: kvValuesPerToken(layers[l]!),
      };
    });
  }

  const config: ModelConfig = { ...full.config, layers };
  const teacherBytes = kvBytesPerToken(cfg, 4);
  const studentBytes = kvBytesPerToken(config, 4);
  const notes = full.notes.filter((s) => !s.startsWith('no latent norm') && !s.startsWith('kv_a_layernorm'));
  notes.push(
    `xKV: ${groups.map((g) => `${g.length > 1 ? `layers ${g.join('+')} share layer ${g[0]}'s latent` : `layer ${g[0]} alone`} (rank ${g.reduce((s, l) => s + planned[l]!, 0)})`).join('; ')}; ` +
      "each group's rank is the sum of its layers' planned ranks (the bytes of plain MLA at this plan); initialised by one PCA of the group's " +
      "no-rope keys and values, predicted from the first layer's input by least squares on the calibration cross moments.",
    opts.latentNorm
      ? "kv_a_layernorm added ({latentNorm}) on each group's latent: RMSNorm changes the function until distillation."
      : 'no latent norm: the factorisation is exact at full rank.',
    "export: no stock engine (llama.cpp deepseek2, DeepSeek-V3) shares a latent across layers; the model runs in mla's own engine (generate, ppl, eval, distil with --engine cpu).",
  );
  return { config, weights: w, layers: reports, teacherKvBytesPerToken: teacherBytes, studentKvBytesPerToken: studentBytes, compression: teacherBytes / studentBytes, notes, ropePairs: full.ropePairs };
}

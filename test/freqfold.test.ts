// TransMLA's FreqFold (convert/freqfold.ts) and the search's stop on a non-finite KL: freqfold 1 is the per-pair
// choice unchanged; on a model whose rope frequencies repeat in pairs a fold of two loses nothing (the exact identity
// at full rank, and Ky Fan's monotone energy); the kept frequencies are pairs 0, c, 2c, …; the CLI names --freqfold
// in its errors before loading anything; a NaN / ∞ candidate stops the search instead of being ranked.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { relError, Tensor } from '../src/tensor/tensor.js';
import { noGrad } from '../src/autograd/var.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { NonFiniteError } from '../src/model/finite.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { autoFolds, foldComponents } from '../src/convert/freqfold.js';
import { componentFor, ropeEnergies } from '../src/convert/rope-select.js';
import { KlMeter } from '../src/convert/search.js';
import { STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');
const ids = Int32Array.from({ length: 29 }, (_, i) => (i * 37 + 11) % 61);
const logits = (m: Model) => noGrad(() => forward(m, ids, 1, ids.length).value.data);

const opts = (over: Partial<ConvertOptions>): ConvertOptions => ({
  plan: { kind: 'rank', rank: 24 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false, nopeInit: 'identity',
  nopeKeys: 'residual', kvBalance: 'transmla', keepLayers: [], calib: { samples: 3, length: 24, seed: 5 }, ...over,
});

/** randomLlama with its rope frequencies repeated in pairs: f0, f0, f2, f2, f4, f4 (head dim 12). */
function pairedFreqs(seed: number, bias: boolean, kvHeads: number): Model {
  const m = randomLlama(seed, bias, be, kvHeads);
  const f = m.config.ropeInvFreq;
  return Model.fromWeights({ ...m.config, ropeInvFreq: f.map((_, j) => f[j - (j % 2)]!) }, m.weights(), be);
}

test('freqfold 1 is the per-pair choice: the same bytes as no freqfold, and at rope dim = head dim each pair keeps its principal component', () => {
  const teacher = randomLlama(3, true, be);
  const a = convert(teacher, null, opts({ plan: { kind: 'ratio', ratio: 3 }, ropeDim: 6, kvBalance: undefined, nopeInit: 'mean-rotation' }));
  const b = convert(teacher, null, opts({ plan: { kind: 'ratio', ratio: 3 }, ropeDim: 6, kvBalance: undefined, nopeInit: 'mean-rotation', freqfold: 1 }));
  for (const [name, t] of a.weights) assert.deepEqual(b.weights.get(name)!.data, t.data, name);
  // Random keys' moment: foldComponents at F = 1 (TransMLA's freqfold 1) against rope-select's principal component.
  const { kMoment, pairing, Hkv, D } = randomMoment(7);
  const e = ropeEnergies(pairing, 6, Hkv, D, new Float64Array(6 * D).fill(1), kMoment);
  const f1 = foldComponents(kMoment, pairing, Hkv, D, D, 1, be.linalg);
  f1.forEach((c, j) => {
    const r = componentFor({ method: 'transmla', H: 6, Hkv, D, energies: e, linalg: be.linalg }, j);
    assert.equal(c.pair, j);
    assert.ok(Math.abs(Math.abs(c.u.reduce((s, x, g) => s + x * r.u[g]!, 0)) - 1) < 1e-9, `pair ${j}: the same direction`);
  });
});

/** A random key second moment (Hkv 2, head dim 12) from 40 correlated samples. */
function randomMoment(seed: number): { kMoment: Float64Array; pairing: 'half'; Hkv: number; D: number } {
  const rng = mulberry32(seed);
  const Hkv = 2;
  const D = 12;
  const KD = Hkv * D;
  const mix = Float64Array.from({ length: KD * KD }, () => gaussian(rng));
  const X = Array.from({ length: 40 }, () => {
    const z = Float64Array.from({ length: KD }, () => gaussian(rng));
    return Float64Array.from({ length: KD }, (_, i) => z.reduce((s, v, k) => s + mix[i * KD + k]! * v, 0));
  });
  const kMoment = new Float64Array(KD * KD);
  for (const x of X) for (let i = 0; i < KD; i++) for (let k = 0; k < KD; k++) kMoment[i * KD + k]! += x[i]! * x[k]!;
  return { kMoment, pairing: 'half', Hkv, D };
}

test('FreqFold keeps at least the key energy of a finer fold (Ky Fan): F | F2 ⇒ energy(F2) ≥ energy(F), at every rope dim', () => {
  const { kMoment, pairing, Hkv, D } = randomMoment(11);
  const energy = (Dr: number, F: number) => foldComponents(kMoment, pairing, Hkv, D, Dr, F, be.linalg).reduce((s, c) => s + c.score, 0);
  // Rope dim = head dim (c = 1): folds 1, 2, 3, 6; rope dim 6 (c = 2): 2, 6.
  for (const [Dr, chain] of [[12, [1, 2, 6]], [12, [1, 3, 6]], [6, [2, 6]]] as const) {
    for (let i = 1; i < chain.length; i++) {
      const [lo, hi] = [energy(Dr, chain[i - 1]!), energy(Dr, chain[i]!)];
      assert.ok(hi >= lo * (1 - 1e-12), `rope dim ${Dr}: freqfold ${chain[i]} keeps ${hi}, freqfold ${chain[i - 1]} ${lo}`);
    }
    assert.ok(energy(Dr, chain.at(-1)!) > energy(Dr, chain[0]!) * (1 + 1e-6), 'the coarsest fold keeps strictly more on random keys');
  }
  assert.deepEqual(autoFolds(12, 6), [2], "auto's ladder: c = 2, then 4 does not divide the 6 pairs");
  assert.deepEqual(autoFolds(32, 8), [4, 8, 16]);
  assert.deepEqual(autoFolds(12, 8), []);
});

for (const bias of [false, true]) {
  test(`freqfold 2 at full rank reproduces a teacher whose frequencies repeat in pairs, and only such a teacher (bias ${bias})`, () => {
    // One kv head, rope dim = head dim: each fold's two components both rotate, at its two (equal) frequencies.
    const o = opts({ ropeDim: 12, freqfold: 2 });
    const paired = pairedFreqs(13, bias, 1);
    const r = convert(paired, null, o);
    const err = relError(logits(Model.fromWeights(r.config, r.weights, be)), logits(paired));
    assert.ok(err <= 1e-5, `relative logit error ${err}`);
    for (const a of r.config.layers) assert.ok(a.kind === 'mla' && a.ropeInvFreq.every((f, p) => f === paired.config.ropeInvFreq[p]), JSON.stringify(a));
    // The same fold on the teacher's own (distinct) frequencies is an approximation.
    const plain = randomLlama(13, bias, be, 1);
    const s = convert(plain, null, o);
    const err2 = relError(logits(Model.fromWeights(s.config, s.weights, be)), logits(plain));
    assert.ok(err2 > 1e-3, `distinct frequencies folded: relative logit error ${err2}`);
  });
}

test('freqfold 2 at rope dim D/2 keeps frequencies of pairs 0, 2, 4 (one geometric run) and says so', () => {
  const teacher = pairedFreqs(17, false, 2);
  const r = convert(teacher, null, opts({ ropeDim: 6, freqfold: 2, plan: { kind: 'ratio', ratio: 2 } }));
  const f = teacher.config.ropeInvFreq;
  assert.deepEqual(r.ropePairs, [0, 2, 4]);
  for (const a of r.config.layers) assert.ok(a.kind === 'mla' && a.ropeInvFreq.join() === [f[0], f[2], f[4]].join(), JSON.stringify(a));
  assert.ok(r.notes.some((n) => n.startsWith('rope: freqfold 2 (TransMLA)')), r.notes.join('\n'));
});

test('mla convert --freqfold: each bad value names the flag and what is expected, before any model is loaded or written', () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = ['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', join(dir, 'out')];
    const cases: [string[], RegExp][] = [
      [['--freqfold', '3', '--rope-dim', '4'], /^error: --freqfold 3: expected 1 or a multiple of head_dim\/rope_dim = 2 that divides the 4 rope pairs: 2, 4 \(head dim 8, --rope-dim 4\)$/m],
      [['--freqfold', 'two'], /^error: --freqfold: expected 1, a multiple of head_dim\/rope_dim .* or auto, got 'two'$/m],
      [['--freqfold', '2', '--rope-method', 'ecomla'], /^error: --freqfold 2: folds RoRoPE's per-frequency key PCA: needs --rope-method transmla, got ecomla$/m],
      [['--freqfold', '2', '--rope-dim', '6'], /^error: --freqfold 2: expected 1: .*the rope dim must divide the head dim \(head dim 8, --rope-dim 6\)$/m],
      [['--recipe', 'transmla', '--rope-dim', '6'], /^error: --freqfold auto: tries c = head_dim\/rope_dim, 2c, 4c, …: the rope dim must divide the head dim .*; give --freqfold 1$/m],
      [['--recipe', 'transmla', '--search'], /^error: --freqfold auto: not with --search .*search with --freqfold 1 \(--recipe transmla sets auto\)$/m],
    ];
    for (const [args, re] of cases) {
      const r = mla([...base, ...args]);
      assert.equal(r.status, 1, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
      assert.ok(!existsSync(join(dir, 'out')), 'no output');
    }
  } finally {
    cleanup();
  }
});

test('search: a candidate whose logits or KL are NaN or ∞ stops the search with the non-finite error naming it', () => {
  const teacher = randomLlama(23, false, be);
  const meter = new KlMeter(teacher, [Array.from(ids.subarray(0, 9))]);
  assert.ok(meter.kl(teacher, 'the teacher') < 1e-9);
  for (const bad of [NaN, Infinity]) {
    const w = new Map([...teacher.weights()].map(([k, t]) => [k, new Tensor(t.shape, Float32Array.from(t.data))]));
    w.get('lm_head.weight')!.data[5] = bad;
    const student = Model.fromWeights(teacher.config, w, be);
    assert.throws(() => meter.kl(student, 'the candidate d_r 4, r_kv 8'), (e: unknown) =>
      e instanceof NonFiniteError && /^search: the candidate d_r 4, r_kv 8: non-finite logits from the student \((NaN|[+-]Inf) at batch row 0, position 0, column 0\)/.test(e.message));
  }
});

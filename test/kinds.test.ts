// Attention kinds: everything that depends on a layer's kind is looked up in a per-kind module (model/attention/,
// export/kinds/, convert/kinds.ts, train/distill.ts TRAINS_ATTENTION), so a new kind (xKV, an SSM layer) is new
// modules plus table entries the compiler asks for, not a tour of `a.kind === 'mla' ? … : …` tests. This file
// keeps those tests from coming back (as layering.test.ts does for imports), checks every job table covers every
// kind, and checks the per-kind rows of the norm-eps rescale on each kind and on a hybrid.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { noGrad } from '../src/autograd/var.js';
import { refBackend } from '../src/backends/ref/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import type { ModelConfig } from '../src/model/config.js';
import { ATTENTION_KINDS } from '../src/model/attention/index.js';
import { EXPORT_KINDS } from '../src/export/kinds/index.js';
import { SOURCE_KINDS } from '../src/convert/kinds.js';
import { rescaleNormEps } from '../src/export/norm-eps.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { ROOT } from './helpers.js';
import { randomLlama } from './models.js';

/** Where kind tests belong: the per-kind modules of each layer of the tree. */
const KIND_MODULES = ['src/model/attention/', 'src/export/kinds/', 'src/convert/kinds.ts'];

/** Files outside them that may still test a kind, each with its reason: file formats that hold one kind only. */
const ALLOWED: Record<string, string> = {
  'src/io/deepseek.ts': "the DeepSeek-V3 config's shared attention fields (kv_lora_rank, qk_rope_head_dim, …) are MLA geometry: read from the MLA layers",
  'src/io/hfconfig.ts': 'an HF llama / qwen2 / mistral config holds GQA layers only (uniformGqaLayer)',
  'src/io/hf.ts': 'an HF llama-family checkpoint holds GQA layers only (expectedGqaTensors)',
};

const KINDS = Object.keys(ATTENTION_KINDS);
const lit = `['"](?:${KINDS.join('|')})['"]`;
/** A comparison of something named kind with a kind name (either order), or a switch case on one. */
const KIND_TEST = new RegExp(`\\bkind\\s*[!=]==?\\s*${lit}|${lit}\\s*[!=]==?\\s*[\\w.?]*\\bkind\\b|\\bcase\\s+${lit}\\s*:`);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('kind tests (`a.kind === "mla"`) only in the per-kind modules and the listed single-kind formats', () => {
  // The detector is live: it finds each form, and not a kind being built or looked up.
  for (const s of ["a.kind === 'mla' ? x : y", 'if (l.kind !== "gqa") throw', "'gqa' === layer.kind", "case 'mla':"]) assert.match(s, KIND_TEST, s);
  for (const s of ["{ kind: 'mla', kvRank }", 'TRAINS_ATTENTION[a.kind]', "plan.kind === 'rank'"]) assert.doesNotMatch(s, KIND_TEST, s);
  const bad: string[] = [];
  const used = new Set<string>();
  for (const file of sources(join(ROOT, 'src'))) {
    const rel = relative(ROOT, file).split('\\').join('/');
    if (KIND_MODULES.some((m) => rel.startsWith(m))) continue;
    readFileSync(file, 'utf8').split('\n').forEach((line, n) => {
      if (!KIND_TEST.test(line)) return;
      if (rel in ALLOWED) used.add(rel);
      else bad.push(`${rel}:${n + 1}: ${line.trim()}`);
    });
  }
  // The PyTorch engine mirrors model/ and train/ (python/mla_torch): its per-kind tables are ATTENTION_KINDS and
  // TRAINS_ATTENTION there, and no `a["kind"] == "mla"` test elsewhere.
  const pyTest = new RegExp(`\\[["']kind["']\\]\\s*[!=]=\\s*${lit}|${lit}\\s*[!=]=\\s*\\w+\\[["']kind["']\\]`);
  assert.match('a["kind"] == "mla"', pyTest);
  for (const file of readdirSync(join(ROOT, 'python', 'mla_torch')).filter((f) => f.endsWith('.py'))) {
    readFileSync(join(ROOT, 'python', 'mla_torch', file), 'utf8').split('\n').forEach((line, n) => {
      if (pyTest.test(line)) bad.push(`python/mla_torch/${file}:${n + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(bad, [], `kind tests outside the per-kind modules (move the behaviour into the kind's module, keyed by AttentionKindName):\n${bad.join('\n')}`);
  // The list stays short and true: every entry still needs its exemption.
  assert.deepEqual([...used].sort(), Object.keys(ALLOWED).sort(), 'an ALLOWED entry no longer tests a kind: remove it');
});

test('every job table has an entry for every attention kind', () => {
  for (const [name, table] of [['EXPORT_KINDS', EXPORT_KINDS], ['SOURCE_KINDS', SOURCE_KINDS]] as const) {
    assert.deepEqual(Object.keys(table).sort(), [...KINDS].sort(), name);
  }
});

function logits(cfg: ModelConfig, w: Map<string, Tensor>, ids: Int32Array): Float32Array | Float64Array {
  return noGrad(() => forward(Model.fromWeights(cfg, w, refBackend), ids, 1, ids.length).value.data);
}

test('norm-eps rescale through each kind\'s rows keeps the logits: GQA with biases, MLA with a low-rank query, a hybrid', () => {
  const opts: ConvertOptions = {
    plan: { kind: 'rank', rank: 12 }, ropeDim: 4, ropeMethod: 'ecomla', basis: 'weight', qRank: 16, latentNorm: true, nopeInit: 'identity', keepLayers: [],
    calib: { samples: 2, length: 16, seed: 7 },
  };
  const params = (m: Model): Map<string, Tensor> => new Map([...m.params].map(([k, v]) => [k, v.value]));
  const gqa = randomLlama(3, true);
  const mla = convert(randomLlama(9), null, opts);
  const hybrid = convert(randomLlama(9), null, { ...opts, keepLayers: [1] });
  const ids = Int32Array.from([1, 5, 9, 33, 2, 17, 60, 4]);
  for (const [name, cfg, w] of [['gqa', gqa.config, params(gqa)], ['mla', mla.config, mla.weights], ['hybrid', hybrid.config, hybrid.weights]] as const) {
    const r = rescaleNormEps(cfg, w, 1e-4); // eps 1e-6 → 1e-4: α = 10
    assert.ok(Math.abs(r.alpha - 10) < 1e-9, `${name}: alpha ${r.alpha}`);
    const err = relError(logits(r.config, r.weights, ids), logits(cfg, w, ids));
    assert.ok(err < 1e-5, `${name}: relative logit error ${err}`); // f32 weights scaled by α: rounding only
  }
});

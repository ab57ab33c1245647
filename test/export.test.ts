// Exports: the GGUF writer/reader (bitwise round trips, Q8_0, a seeded set of malformed files each rejected
// naming the file and the field), GGUF llama/deepseek2 exports read back through our own reader into the same
// logits (half-split and adjacent rope, biases, rope scaling, padded ranks, q_lora), the stock DeepSeek-V3
// directory read back by our loader, refusals with the reason and what to do, tokenizer metadata, and the CLI.
// llama.cpp itself runs the exports in llamacpp.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, relError } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { noGrad } from '../src/autograd/var.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { defaultInvFreq, llama3InvFreq, type MlaAttention, type ModelConfig } from '../src/model/config.js';
import { UserError } from '../src/errors.js';
import { loadModel } from '../src/io/load.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { loadLlama2cTokenizer } from '../src/io/llama2c-tokenizer.js';
import type { Tokenizer } from '../src/io/tokenizer.js';
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32 } from '../src/io/dtype.js';
import {
  GGML_TYPE, decodeGgmlTensor, dequantizeQ8_0, encodeGgmlTensor, ggufTensorToF32, kv, quantizeQ8_0, readGguf, readGgufHeader, writeGguf,
  type GgmlTypeName, type GgufTensorIn, type GgufValue,
} from '../src/io/gguf.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { exportGguf, planGguf } from '../src/export/gguf-export.js';
import { importGguf } from '../src/export/gguf-import.js';
import { exportHf } from '../src/export/hf-export.js';
import { hfVocab, llama2cVocab, TOKEN_TYPE, type GgufVocab } from '../src/export/gguf-vocab.js';
import { adjacentToHalfRows, halfToAdjacentRows } from '../src/export/stock.js';
import { padKvRanks, stockMlaProblems } from '../src/export/kinds/mla-stock.js';
import { STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const be = getBackend('ref');

function logits(m: Model, ids: Int32Array): Float32Array | Float64Array {
  return noGrad(() => forward(m, ids, 1, ids.length).value.data);
}

function sampleIds(V: number, n: number, seed: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

function randomF32(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => gaussian(rng) * 10 ** Math.floor(rng() * 6 - 3));
}

const bytesEqual = (a: ArrayBufferView, b: ArrayBufferView): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** A vocabulary of V tokens for models without a tokenizer (llama-style: <unk>, <s>, </s>, then pieces). */
function syntheticVocab(V: number): GgufVocab {
  const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: V - 3 }, (_, i) => `\u2581t${i + 3}`)];
  return {
    model: 'llama', tokens, scores: tokens.map(() => 0), types: tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : 1)),
    bos: 1, eos: 2, unk: 0, addBos: true, notes: [],
  };
}

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'rank', rank: 12 }, ropeDim: 4, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: true, nopeInit: 'identity', keepLayers: [],
    calib: { samples: 3, length: 32, seed: 7 }, ...over,
  };
}

/** The same model with layer `i`'s latent cut to its first `r` components: a valid model with per-layer kv ranks. */
function withRank(cfg: ModelConfig, w: Map<string, Tensor>, i: number, r: number): { config: ModelConfig; weights: Map<string, Tensor> } {
  const a = cfg.layers[i] as MlaAttention;
  const { kvRank: R, ropeDim: Dr, nopeDim: Dn, vDim: Dv } = a;
  const C = cfg.hiddenSize;
  const rows = cfg.numHeads * (Dn + Dv);
  const p = `model.layers.${i}.self_attn`;
  const out = new Map(w);
  const kva = w.get(`${p}.kv_a_proj_with_mqa.weight`)!.data;
  const nk = new Float32Array((r + Dr) * C);
  nk.set(kva.subarray(0, r * C));
  nk.set(kva.subarray(R * C), r * C);
  out.set(`${p}.kv_a_proj_with_mqa.weight`, new Tensor([r + Dr, C], nk));
  out.set(`${p}.kv_a_layernorm.weight`, new Tensor([r], Float32Array.from(w.get(`${p}.kv_a_layernorm.weight`)!.data.subarray(0, r))));
  const kvb = w.get(`${p}.kv_b_proj.weight`)!.data;
  out.set(`${p}.kv_b_proj.weight`, new Tensor([rows, r], Float32Array.from({ length: rows * r }, (_, k) => kvb[Math.floor(k / r) * R + (k % r)]!)));
  const layers = cfg.layers.map((l, j) => (j === i ? { ...a, kvRank: r } : l));
  return { config: { ...cfg, layers }, weights: out };
}

/** A converted random model whose layers have different kv ranks (12 and 7). */
function perLayerRanks(q: number | null = null): { config: ModelConfig; weights: Map<string, Tensor> } {
  const r = convert(randomLlama(9), null, opts({ qRank: q }));
  return withRank(r.config, r.weights, 1, 7);
}

// ------------------------------------------------------------------------------------------------------------
// GGUF file format

test('GGUF write → read is bitwise: metadata of every type, F32/F16/BF16/Q8_0 tensors, aligned offsets, atomic', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'a.gguf');
    const md = new Map<string, GgufValue>([
      ['general.architecture', kv.str('test')],
      ['u8', { type: 'u8', value: 255 }], ['i8', { type: 'i8', value: -128 }], ['u16', { type: 'u16', value: 65535 }],
      ['i16', { type: 'i16', value: -32768 }], ['u32', kv.u32(4294967295)], ['i32', kv.i32(-2147483648)],
      ['f32', kv.f32(Math.fround(0.1))], ['f64', { type: 'f64', value: Math.PI }], ['u64', kv.u64(2n ** 63n + 5n)],
      ['i64', { type: 'i64', value: -(2n ** 62n) }], ['bool', kv.bool(true)], ['unicode ключ ✓', kv.str('▁héllo\n')],
      ['strs', kv.strs(['a', '', '<0x0A>', '▁the'])], ['f32s', kv.f32s([1.5, -0, Infinity])], ['i32s', kv.i32s([1, -2, 3])],
      ['bools', { type: 'array', itemType: 'bool', value: [true, false] }], ['empty', kv.strs([])],
    ]);
    const tensors: GgufTensorIn[] = [
      { name: 'f32.matrix', dims: [5, 3], type: 'F32', data: randomF32(15, 1) },
      { name: 'f32.special', dims: [7], type: 'F32', data: Float32Array.of(0, -0, Infinity, -Infinity, NaN, 1e-45, 3.4028234663852886e38) },
      { name: 'f16', dims: [7, 1], type: 'F16', data: randomF32(7, 2) },
      { name: 'bf16.3d', dims: [2, 3, 4], type: 'BF16', data: randomF32(24, 3) },
      { name: 'q8_0', dims: [64, 3], type: 'Q8_0', data: randomF32(192, 4) },
      { name: 'f32.4d', dims: [1, 2, 1, 3], type: 'F32', data: randomF32(6, 5) },
    ];
    writeGguf(file, md, tensors);
    const g = readGguf(file);
    assert.equal(g.version, 3);
    assert.equal(g.alignment, 32);
    assert.deepEqual([...g.kvs.keys()], [...md.keys(), 'general.alignment']);
    for (const [k, v] of md) assert.deepEqual(g.kvs.get(k), v, k);
    assert.deepEqual(g.tensors.map((t) => [t.name, t.dims, t.type]), tensors.map((t) => [t.name, [...t.dims], t.type]));
    for (const t of tensors) {
      const info = g.tensors.find((x) => x.name === t.name)!;
      assert.equal(info.offset % 32, 0, `${t.name} offset aligned`);
      assert.equal((g.dataStart + info.offset) % 32, 0);
      const raw = g.data.get(t.name)!;
      assert.ok(bytesEqual(raw, encodeGgmlTensor(t.type, t.data)), `${t.name}: stored bytes`);
      if (t.type === 'F32') assert.ok(bytesEqual(new Uint8Array(ggufTensorToF32(info, raw).buffer), new Uint8Array(t.data.buffer)), `${t.name}: values`);
    }
    // Decoding and re-encoding reproduces the file byte for byte (F32/F16/BF16 are exact; Q8_0 bytes are kept as read).
    const again = join(dir, 'b.gguf');
    const lossless = tensors.filter((t) => t.type !== 'Q8_0');
    writeGguf(join(dir, 'c.gguf'), md, lossless);
    const c = readGguf(join(dir, 'c.gguf'));
    writeGguf(again, c.kvs, c.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: ggufTensorToF32(t, c.data.get(t.name)!) })));
    assert.ok(readFileSync(again).equals(readFileSync(join(dir, 'c.gguf'))), 'rewrite of what was read is identical');
    assert.deepEqual(readdirSync(dir).sort(), ['a.gguf', 'b.gguf', 'c.gguf'], 'no temporary file left behind');
    // The header alone validates the same way.
    assert.equal(readGgufHeader(file).tensors.length, tensors.length);
    // Writer refusals: bad names, duplicate tensors, Q8_0 rows, out-of-range ints.
    const one = (t: Partial<GgufTensorIn>): GgufTensorIn[] => [{ name: 'x', dims: [4], type: 'F32', data: new Float32Array(4), ...t }];
    assert.throws(() => writeGguf(join(dir, 'e.gguf'), md, [...one({}), ...one({})]), /given twice/);
    assert.throws(() => writeGguf(join(dir, 'e.gguf'), md, one({ name: 'n'.repeat(64) })), /1\.\.63 bytes/);
    assert.throws(() => writeGguf(join(dir, 'e.gguf'), md, one({ type: 'Q8_0', dims: [4] })), /multiple of 32/);
    assert.throws(() => writeGguf(join(dir, 'e.gguf'), new Map([['k', kv.u32(-1)]]), []), /not a valid u32/);
    assert.ok(!existsSync(join(dir, 'e.gguf')));
  } finally {
    cleanup();
  }
});

test('F16/BF16 storage rounds like the safetensors path; Q8_0 follows ggml (f16 scale max/127, round half away)', () => {
  const x = randomF32(96, 9);
  assert.ok(bytesEqual(decodeGgmlTensor('F16', encodeGgmlTensor('F16', x), 96), f16ToF32(f32ToF16(x))));
  assert.ok(bytesEqual(decodeGgmlTensor('BF16', encodeGgmlTensor('BF16', x), 96), bf16ToF32(f32ToBf16(x))));
  // A block whose max is 16: d = f16(16/127), q = round(x·127/16).
  const b = Float32Array.from({ length: 32 }, (_, j) => j - 16);
  const q = quantizeQ8_0(b);
  assert.equal(q.length, 34);
  const d = f16ToF32(Uint16Array.of(new DataView(q.buffer).getUint16(0, true)))[0]!;
  assert.equal(d, f16ToF32(f32ToF16(Float32Array.of(16 / 127)))[0]);
  for (let j = 0; j < 32; j++) {
    const v = Math.fround((j - 16) * Math.fround(1 / Math.fround(16 / 127)));
    assert.equal(new Int8Array(q.buffer)[2 + j], Math.sign(v) * Math.round(Math.abs(v)), `q[${j}]`);
  }
  // Error bound on random data: |x − x̂| ≤ d/2 (+ the f16 rounding of d), zero blocks stay zero.
  const y = randomF32(32 * 8, 11);
  y.fill(0, 64, 96);
  const yq = dequantizeQ8_0(quantizeQ8_0(y), y.length);
  for (let blk = 0; blk < 8; blk++) {
    const s = y.subarray(blk * 32, blk * 32 + 32);
    const amax = Math.max(...Array.from(s, Math.abs));
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(s[j]! - yq[blk * 32 + j]!) <= (amax / 127) * 0.51 + amax * 1e-3, `block ${blk}[${j}]`);
  }
  assert.ok(yq.subarray(64, 96).every((v) => v === 0));
});

/** Bytes of a GGUF file built by hand, so broken files can say anything. */
class Raw {
  parts: Buffer[] = [];
  u32(v: number): this { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.parts.push(b); return this; }
  u64(v: bigint | number): this { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.parts.push(b); return this; }
  str(s: string): this { const b = Buffer.from(s); this.u64(b.length); this.parts.push(b); return this; }
  bytes(b: Buffer): this { this.parts.push(b); return this; }
  kvU32(k: string, v: number): this { return this.str(k).u32(4).u32(v); }
  tensor(name: string, dims: number[], type: number, offset: number): this {
    this.str(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }
  pad(a = 32): this { const n = Buffer.concat(this.parts).length; return this.bytes(Buffer.alloc((a - (n % a)) % a)); }
  build(): Buffer { return Buffer.concat(this.parts); }
}

test('malformed GGUF files are rejected naming the file and the field', () => {
  const { dir, cleanup } = tempDir();
  try {
    const rng = mulberry32(77);
    const data = Buffer.from(Array.from({ length: 96 }, () => Math.floor(rng() * 256)));
    const head = (nT: number, nKv: number, magic = 'GGUF', version = 3): Raw => new Raw().bytes(Buffer.from(magic, 'latin1')).u32(version).u64(nT).u64(nKv);
    const twoTensors = (bOffset: number, bName = 'b', bDims = [4]): Buffer =>
      head(2, 1).kvU32('general.alignment', 32).tensor('a', [4], GGML_TYPE.F32, 0).tensor(bName, bDims, GGML_TYPE.F32, bOffset).pad().bytes(data).build();
    const cases: { name: string; bytes: Buffer; field: RegExp }[] = [
      { name: 'empty', bytes: Buffer.alloc(0), field: /magic: expected "GGUF"/ },
      { name: 'bad-magic', bytes: head(0, 0, 'GGML').build(), field: /magic: expected "GGUF", got "GGML"/ },
      { name: 'bad-version', bytes: head(0, 0, 'GGUF', 2).build(), field: /version: expected 3, got 2/ },
      { name: 'truncated-counts', bytes: head(0, 0).build().subarray(0, 12), field: /tensor count: needs 8 bytes/ },
      { name: 'kv-past-end', bytes: head(0, 3).kvU32('a', 1).build(), field: /metadata\[1\]\.key \(string length\)/ },
      { name: 'garbage-count', bytes: head(0, 2 ** 40).build(), field: /metadata count: .*exceeds/ },
      { name: 'duplicate-key', bytes: head(0, 2).kvU32('k', 1).kvU32('k', 2).build(), field: /metadata "k": key appears more than once/ },
      { name: 'bad-value-type', bytes: head(0, 1).str('k').u32(99).build(), field: /metadata "k" \(type\): expected a GGUF value type/ },
      { name: 'huge-array', bytes: head(0, 1).str('k').u32(9).u32(4).u64(2n ** 50n).build(), field: /metadata "k" \(array length\)/ },
      { name: 'bad-bool', bytes: head(0, 1).str('k').u32(7).bytes(Buffer.of(2)).build(), field: /metadata "k": expected a bool/ },
      { name: 'bad-alignment', bytes: head(0, 1).kvU32('general.alignment', 24).build(), field: /general\.alignment.*power of two/ },
      { name: 'duplicate-tensor', bytes: twoTensors(32, 'a'), field: /tensor "a": tensor name appears more than once/ },
      { name: 'offset-past-end', bytes: twoTensors(4096), field: /tensor "b"\.offset: 4096 lies past the end of the file/ },
      { name: 'data-past-end', bytes: twoTensors(64, 'b', [32]), field: /tensor "b"\.offset: .*runs past the end of the data section/ },
      { name: 'misaligned', bytes: twoTensors(20), field: /tensor "b"\.offset: 20 is not a multiple of the alignment 32/ },
      { name: 'overlap', bytes: twoTensors(0), field: /tensor "b"\.offset: .*overlaps tensor "a"/ },
      { name: 'bad-ggml-type', bytes: head(1, 0).tensor('a', [4], 2, 0).pad().bytes(data).build(), field: /tensor "a"\.type: expected a ggml type/ },
      { name: 'too-many-dims', bytes: head(1, 0).tensor('a', [1, 1, 1, 1, 4], 0, 0).pad().bytes(data).build(), field: /tensor "a"\.n_dims: expected 1\.\.4, got 5/ },
      { name: 'zero-dim', bytes: head(1, 0).tensor('a', [0], 0, 0).pad().bytes(data).build(), field: /tensor "a"\.dims\[0\]: expected a positive size/ },
      { name: 'q8-row', bytes: head(1, 0).tensor('a', [16], 8, 0).pad().bytes(data).build(), field: /tensor "a"\.dims\[0\]: Q8_0 needs a multiple of 32/ },
    ];
    for (const c of cases) {
      const file = join(dir, `${c.name}.gguf`);
      writeFileSync(file, c.bytes);
      for (const read of [readGguf, readGgufHeader]) {
        assert.throws(
          () => read(file),
          (e: unknown) => e instanceof UserError && e.message.startsWith(`${file}: `) && c.field.test(e.message),
          `${c.name}: expected an error naming ${file} and ${c.field}`,
        );
      }
    }
    // The well-formed sibling of those cases reads.
    writeFileSync(join(dir, 'good.gguf'), twoTensors(32));
    const g = readGguf(join(dir, 'good.gguf'));
    assert.deepEqual(g.tensors.map((t) => t.name), ['a', 'b']);
    assert.ok(bytesEqual(g.data.get('b')!, data.subarray(32, 48)));
    assert.throws(() => readGguf(join(dir, 'missing.gguf')), /file not found/);
  } finally {
    cleanup();
  }
});

// ------------------------------------------------------------------------------------------------------------
// Model exports read back

test('rope row reordering half → adjacent is a permutation and its inverse undoes it', () => {
  const x = randomF32(3 * 10 * 5, 3);
  const starts = [0, 10, 24];
  const y = halfToAdjacentRows(x, 5, starts, 6);
  assert.deepEqual(Array.from(adjacentToHalfRows(y, 5, starts, 6)), Array.from(x));
  // Row start+2j ← start+j, start+2j+1 ← start+3+j (d = 6).
  assert.deepEqual(Array.from(y.subarray(10 * 5 + 2 * 5, 10 * 5 + 3 * 5)), Array.from(x.subarray(11 * 5, 12 * 5)));
  assert.deepEqual(Array.from(y.subarray(10 * 5 + 3 * 5, 10 * 5 + 4 * 5)), Array.from(x.subarray(14 * 5, 15 * 5)));
});

test('GGUF llama export of stories260K (adjacent rope) reads back to the same weights and logits', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { config, weights } = loadLlama2c(STORIES_BIN);
    const tok = loadLlama2cTokenizer(STORIES_TOK, config.vocabSize);
    const file = join(dir, 'stories.gguf');
    const plan = exportGguf(file, config, weights, { vocab: llama2cVocab(tok), source: STORIES_BIN });
    assert.equal(plan.arch, 'llama');
    const back = importGguf(file);
    assert.equal(back.config.ropePairing, 'adjacent');
    assert.deepEqual(back.tokens, llama2cVocab(tok).tokens);
    for (const [name, t] of weights) assert.deepEqual(Array.from(back.weights.get(name)!.data), Array.from(t.data), name);
    const ids = sampleIds(512, 24, 1);
    const a = logits(Model.fromWeights(config, weights, be), ids);
    const b = logits(Model.fromWeights(back.config, back.weights, be), ids);
    assert.ok(relError(b, a) <= 1e-12, `relative logit error ${relError(b, a)}`);
    assert.equal(back.metadata.get('llama.attention.head_count_kv')?.value, 4);
    assert.equal(back.metadata.get('general.file_type')?.value, 0);
  } finally {
    cleanup();
  }
});

test('GGUF llama export permutes half-split q/k rows (and biases) and writes rope scaling as rope_freqs', () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const [name, m] of [['qwen2-style bias, half rope', randomLlama(3, true)], ['llama3 rope scaling', randomLlama(5)]] as const) {
      let cfg: ModelConfig = m.config;
      if (name === 'llama3 rope scaling') {
        const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
        cfg = { ...cfg, ropeTheta: 500000, ropeScaling: scaling, ropeInvFreq: llama3InvFreq(defaultInvFreq(500000, 12), scaling) };
      }
      const file = join(dir, 'm.gguf');
      const plan = exportGguf(file, cfg, m.weights(), { vocab: syntheticVocab(61) });
      assert.equal(plan.tensors.some((t) => t.name === 'rope_freqs.weight'), name === 'llama3 rope scaling', name);
      assert.equal(plan.tensors.some((t) => t.name === 'blk.0.attn_q.bias'), name.includes('bias'));
      const back = importGguf(file);
      const ids = sampleIds(61, 30, 2);
      const err = relError(logits(Model.fromWeights(back.config, back.weights, be), ids), logits(Model.fromWeights(cfg, m.weights(), be), ids));
      assert.ok(err <= 1e-6, `${name}: relative logit error ${err}`);
    }
  } finally {
    cleanup();
  }
});

test('GGUF deepseek2 export: k_b/v_b split, adjacent rope, padded ranks, q_lora and rope scaling read back to the same logits', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [string, number | null][] = [['q_proj', null], ['q_lora', 16]];
    for (const [name, qRank] of cases) {
      const r = perLayerRanks(qRank);
      const mlaLayers = r.config.layers as MlaAttention[];
      const ranks = new Set(mlaLayers.map((a) => a.kvRank));
      const file = join(dir, 'm.gguf');
      assert.throws(() => exportGguf(file, r.config, r.weights, { vocab: syntheticVocab(61) }), /per-layer kv ranks \(12, 7\).*add 'padRanks'/);
      const plan = exportGguf(file, r.config, r.weights, { vocab: syntheticVocab(61), padRanks: true });
      assert.equal(plan.arch, 'deepseek2');
      const R = Math.max(...ranks);
      const { ropeDim: Dr, nopeDim: Dn, vDim: Dv } = mlaLayers[0]!;
      const H = r.config.numHeads;
      const dims = (n: string): number[] => plan.tensors.find((t) => t.name === n)!.dims as number[];
      assert.deepEqual(dims('blk.0.attn_k_b.weight'), [Dn, R, H]);
      assert.deepEqual(dims('blk.0.attn_v_b.weight'), [R, Dv, H]);
      assert.deepEqual(dims('blk.0.attn_kv_a_mqa.weight'), [r.config.hiddenSize, R + Dr]);
      const md = plan.metadata;
      assert.equal(md.get('deepseek2.attention.key_length')?.value, R + Dr);
      assert.equal(md.get('deepseek2.attention.value_length')?.value, R);
      assert.equal(md.get('deepseek2.attention.key_length_mla')?.value, Dn + Dr);
      assert.equal(md.get('deepseek2.attention.value_length_mla')?.value, Dv);
      assert.equal(md.get('deepseek2.attention.q_lora_rank')?.value, qRank ?? 0);
      assert.equal(md.get('deepseek2.attention.head_count_kv')?.value, 1);
      assert.equal(md.get('deepseek2.leading_dense_block_count')?.value, r.config.numLayers);
      assert.equal(md.get('deepseek2.rope.dimension_count')?.value, Dr);
      const back = importGguf(file);
      const ids = sampleIds(61, 30, 4);
      const err = relError(logits(Model.fromWeights(back.config, back.weights, be), ids), logits(Model.fromWeights(r.config, r.weights, be), ids));
      assert.ok(err <= 1e-5, `${name}: relative logit error ${err}`);
    }
  } finally {
    cleanup();
  }
});

test('--pad-ranks is exact, including under the latent RMSNorm', () => {
  const r = perLayerRanks();
  const ranks = (r.config.layers as MlaAttention[]).map((a) => a.kvRank);
  const p = padKvRanks(r.config, r.weights);
  assert.ok((p.config.layers as MlaAttention[]).every((a) => a.kvRank === Math.max(...ranks)));
  const ids = sampleIds(61, 25, 8);
  const err = relError(logits(Model.fromWeights(p.config, p.weights, be), ids), logits(Model.fromWeights(r.config, r.weights, be), ids));
  assert.ok(err <= 1e-6, `relative logit error ${err}`);
});

test('f16/bf16/q8_0 GGUF exports stay close; q8_0 falls back to f16 for rows not a multiple of 32', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { config, weights } = loadLlama2c(STORIES_BIN);
    const tok = loadLlama2cTokenizer(STORIES_TOK, config.vocabSize);
    const ids = sampleIds(512, 20, 5);
    const ref = logits(Model.fromWeights(config, weights, be), ids);
    for (const [dtype, tol] of [['f16', 5e-3], ['bf16', 3e-2], ['q8_0', 3e-2]] as const) {
      const file = join(dir, `${dtype}.gguf`);
      const plan = exportGguf(file, config, weights, { vocab: llama2cVocab(tok), dtype });
      const types = new Map(plan.tensors.map((t) => [t.name, t.type] as [string, GgmlTypeName]));
      assert.equal(types.get('blk.0.attn_norm.weight'), 'F32', 'vectors stay f32');
      if (dtype === 'q8_0') {
        assert.equal(types.get('blk.0.attn_q.weight'), 'Q8_0');
        assert.equal(types.get('blk.0.ffn_down.weight'), 'F16', 'rows of 172 cannot be Q8_0');
        assert.ok(plan.notes.some((n) => n.includes('written as f16')));
      }
      const back = importGguf(file);
      const err = relError(logits(Model.fromWeights(back.config, back.weights, be), ids), ref);
      assert.ok(err <= tol, `${dtype}: relative logit error ${err} > ${tol}`);
    }
  } finally {
    cleanup();
  }
});

test('exports refuse what the stock layouts cannot express, saying why and what to do', () => {
  const teacher = randomLlama(9);
  const vocab = syntheticVocab(61);
  const refuse = (cfg: ModelConfig, w: Map<string, Tensor>, pattern: RegExp): void => {
    for (const run of [() => planGguf(cfg, w, { vocab }), () => exportHf('/nonexistent/never-written', cfg, w)]) {
      assert.throws(run, (e: unknown) => e instanceof UserError && pattern.test(e.message), String(pattern));
    }
  };
  const noNorm = convert(teacher, null, opts({ latentNorm: false }));
  refuse(noNorm.config, noNorm.weights, /no latent norm.*convert with 'latentNorm'/s);
  const hybrid = convert(teacher, null, opts({ keepLayers: [1] }));
  refuse(hybrid.config, hybrid.weights, /hybrid model: layer\(s\) 1 .*convert without 'keepLayers'/s);
  const biased = convert(randomLlama(9, true), null, opts({}));
  refuse(biased.config, biased.weights, /attention biases.*only part of them folds exactly.*dropping them changes the logits by \d/s);
  const r6 = convert(teacher, null, opts({ ropeDim: 6 }));
  const odd = { ...r6.config, layers: r6.config.layers.map((a) => ({ ...a, ropeInvFreq: [1, 0.5, 0.1] })) };
  refuse(odd, r6.weights, /not a geometric run/);
  const perLayer = { ...r6.config, layers: r6.config.layers.map((a, i) => ({ ...a, ropeInvFreq: i === 0 ? [1, 0.1, 0.01] : [1, 0.5, 0.25] })) };
  refuse(perLayer, r6.weights, /per-layer rope frequencies/);
  // Several problems are reported together.
  const both = convert(teacher, null, opts({ latentNorm: false, keepLayers: [0] }));
  assert.equal(stockMlaProblems(both.config, 'hf', false).length, 2);
});

test('HF export: stock DeepSeek-V3 directory (no extra key, rope_interleave) loads back with the same logits', () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = perLayerRanks(); // from a half-split-rope teacher: rows must be reordered for rope_interleave
    const out = join(dir, 'ds');
    assert.throws(() => exportHf(out, r.config, r.weights), /add 'padRanks'/);
    const rep = exportHf(out, r.config, r.weights, { padRanks: true });
    assert.ok(rep.notes.some((n) => n.includes('{padRanks}')));
    const cfgJson = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfgJson.mla_upcycle, undefined);
    assert.equal(cfgJson.model_type, 'deepseek_v3');
    assert.equal(cfgJson.rope_interleave, true);
    assert.equal(cfgJson.first_k_dense_replace, r.config.numLayers);
    assert.equal(cfgJson.kv_lora_rank, Math.max(...(r.config.layers as MlaAttention[]).map((a) => a.kvRank)));
    const back = loadModel(out);
    assert.equal(back.format, 'deepseek_v3');
    assert.equal(back.config.ropePairing, 'adjacent');
    const ids = sampleIds(61, 30, 6);
    const err = relError(logits(Model.fromWeights(back.config, back.weights, be), ids), logits(Model.fromWeights(r.config, r.weights, be), ids));
    assert.ok(err <= 1e-5, `relative logit error ${err}`);
  } finally {
    cleanup();
  }
});

// ------------------------------------------------------------------------------------------------------------
// Tokenizer metadata

test('GGUF vocab from llama2.c: <unk>/<s>/</s>, ▁ for space, byte tokens typed 6, scores kept', () => {
  const tok = loadLlama2cTokenizer(STORIES_TOK, 512);
  const v = llama2cVocab(tok);
  assert.equal(v.model, 'llama');
  assert.deepEqual(v.tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  assert.deepEqual(v.types.slice(0, 4), [TOKEN_TYPE.unknown, TOKEN_TYPE.control, TOKEN_TYPE.control, TOKEN_TYPE.byte]);
  assert.equal(v.types[258], TOKEN_TYPE.byte);
  assert.equal(v.tokens[259], '\u2581t');
  assert.equal(v.types[259], TOKEN_TYPE.normal);
  assert.deepEqual(v.scores, Array.from(tok.scores));
  assert.deepEqual([v.bos, v.eos, v.unk, v.addBos], [1, 2, 0, true]);
});

const stubTok = (bosId: number | null, eosId: number | null): Tokenizer => ({ vocabSize: 0, bosId, eosId, encode: () => [], decode: () => '' });

test('GGUF vocab from tokenizer.json: SentencePiece-style BPE → llama (merge-rank scores), byte-level BPE → gpt2 (merges)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const special = (id: number, content: string) => ({ id, content, special: true });
    const spm = {
      added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
      pre_tokenizer: { type: 'Metaspace', replacement: '▁' },
      model: {
        type: 'BPE', unk_token: '<unk>', byte_fallback: true,
        vocab: { '<unk>': 0, '<s>': 1, '</s>': 2, '<0x0A>': 3, h: 4, e: 5, he: 6, '▁': 7, '▁he': 8 },
        merges: ['h e', ['▁', 'he']],
      },
    };
    mkdirSync(join(dir, 'spm'));
    writeFileSync(join(dir, 'spm', 'tokenizer.json'), JSON.stringify(spm));
    const a = hfVocab(join(dir, 'spm', 'tokenizer.json'), stubTok(1, 2));
    assert.equal(a.model, 'llama');
    assert.deepEqual(a.tokens, ['<unk>', '<s>', '</s>', '<0x0A>', 'h', 'e', 'he', '▁', '▁he']);
    assert.deepEqual(a.scores, [0, 0, 0, 0, 0, 0, -1, 0, -2]);
    assert.deepEqual(a.types, [2, 3, 3, 6, 1, 1, 1, 1, 1]);
    assert.deepEqual([a.bos, a.eos, a.unk, a.addBos], [1, 2, 0, true]);

    const bl = {
      added_tokens: [special(5, '<|endoftext|>')],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
      decoder: { type: 'ByteLevel' },
      model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2, 'Ġ': 3, 'Ġab': 4 }, merges: ['a b', 'Ġ ab'] },
    };
    writeFileSync(join(dir, 'bl.json'), JSON.stringify(bl));
    const b = hfVocab(join(dir, 'bl.json'), stubTok(null, 5));
    assert.equal(b.model, 'gpt2');
    assert.equal(b.pre, 'gpt-2');
    assert.deepEqual(b.merges, ['a b', 'Ġ ab']);
    assert.deepEqual(b.types, [1, 1, 1, 1, 1, 3]);
    assert.deepEqual([b.bos, b.eos, b.addBos], [null, 5, false]);
    assert.equal(b.scores, undefined);
    writeFileSync(join(dir, 'wp.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    assert.throws(() => hfVocab(join(dir, 'wp.json'), stubTok(null, null)), /handles BPE and Unigram/);
  } finally {
    cleanup();
  }
});

// ------------------------------------------------------------------------------------------------------------
// CLI

test('mla export: gguf and hf from the CLI, with clear errors for what cannot be exported', () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'stories.gguf');
    const ok = mla(['export', STORIES_BIN, '--tokenizer', STORIES_TOK, '--format', 'gguf', '--out', out, '--dtype', 'f16', '--json']);
    assert.equal(ok.status, 0, ok.stderr);
    const j = JSON.parse(ok.stdout) as { architecture: string; dtype: string };
    assert.deepEqual([j.architecture, j.dtype], ['llama', 'f16']);
    assert.equal(readGgufHeader(out).kvs.get('general.file_type')?.value, 1);
    const again = mla(['export', STORIES_BIN, '--tokenizer', STORIES_TOK, '--format', 'gguf', '--out', out]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists \(add --overwrite\)/);
    const noTok = mla(['export', STORIES_BIN, '--format', 'gguf', '--out', join(dir, 'x.gguf')]);
    assert.equal(noTok.status, 1);
    assert.match(noTok.stderr, /give --tokenizer/);
    const noFmt = mla(['export', STORIES_BIN, '--out', join(dir, 'y')]);
    assert.equal(noFmt.status, 1);
    assert.match(noFmt.stderr, /--format gguf\|hf is required/);
    const gqaHf = mla(['export', STORIES_BIN, '--format', 'hf', '--out', join(dir, 'z')]);
    assert.equal(gqaHf.status, 1);
    assert.match(gqaHf.stderr, /no MLA layer: convert it first/);
    assert.doesNotMatch(gqaHf.stderr, /\n\s+at /, 'no stack trace');
    const badDtype = mla(['export', STORIES_BIN, '--tokenizer', STORIES_TOK, '--format', 'gguf', '--out', join(dir, 'w.gguf'), '--dtype', 'q4']);
    assert.equal(badDtype.status, 1);
    assert.match(badDtype.stderr, /--dtype: expected f32, f16, bf16, q8_0/);
  } finally {
    cleanup();
  }
});

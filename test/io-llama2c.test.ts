// llama2.c checkpoint and tokenizer: the real stories260K fixture (shapes, tying, config), malformed headers,
// run.c's BPE encode (the heap merge against a literal port of run.c's O(n²) loop) and its generation
// printing, and a small run.c-style forward here in the test proving the loaded weights + decode reproduce
// the golden greedy text byte for byte (independent of the project's own forward).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../src/tensor/rng.js';
import type { Tensor } from '../src/tensor/tensor.js';
import type { ModelConfig } from '../src/model/config.js';
import { UserError } from '../src/errors.js';
import { loadLlama2c, loadLlama2cTokenizer, type Llama2cTokenizer } from '../src/io/llama2c.js';
import { STORIES_BIN, STORIES_GOLDEN, STORIES_TOK, tempDir } from './helpers.js';

test('stories260K loads with HF names, the right shapes and a llama2.c config', () => {
  const { config, weights } = loadLlama2c(STORIES_BIN);
  assert.equal(config.arch, 'llama');
  assert.deepEqual(
    [config.vocabSize, config.hiddenSize, config.intermediateSize, config.numLayers, config.numHeads, config.maxPositions],
    [512, 64, 172, 5, 8, 512],
  );
  assert.equal(config.ropePairing, 'adjacent');
  assert.equal(config.ropeTheta, 10000);
  assert.equal(config.rmsNormEps, 1e-5);
  assert.equal(config.tieEmbeddings, true);
  assert.equal(config.bosTokenId, 1);
  assert.equal(config.eosTokenId, 2);
  assert.equal(config.layers.length, 5);
  for (const l of config.layers) assert.deepEqual(l, { kind: 'gqa', numKvHeads: 4, headDim: 8, qkvBias: false });
  assert.equal(config.ropeInvFreq.length, 4);
  config.ropeInvFreq.forEach((f, i) => assert.ok(Math.abs(f - 10000 ** (-(2 * i) / 8)) < 1e-15));

  const shapes: Record<string, number[]> = {
    'model.embed_tokens.weight': [512, 64],
    'model.norm.weight': [64],
  };
  for (let l = 0; l < 5; l++) {
    const p = `model.layers.${l}`;
    Object.assign(shapes, {
      [`${p}.input_layernorm.weight`]: [64],
      [`${p}.self_attn.q_proj.weight`]: [64, 64],
      [`${p}.self_attn.k_proj.weight`]: [32, 64],
      [`${p}.self_attn.v_proj.weight`]: [32, 64],
      [`${p}.self_attn.o_proj.weight`]: [64, 64],
      [`${p}.post_attention_layernorm.weight`]: [64],
      [`${p}.mlp.gate_proj.weight`]: [172, 64],
      [`${p}.mlp.up_proj.weight`]: [172, 64],
      [`${p}.mlp.down_proj.weight`]: [64, 172],
    });
  }
  assert.deepEqual([...weights.keys()].sort(), Object.keys(shapes).sort(), 'no lm_head: the classifier is tied');
  for (const [name, shape] of Object.entries(shapes)) {
    const t = weights.get(name)!;
    assert.deepEqual(t.shape, shape, name);
    assert.equal(t.dtype, 'f32');
    assert.ok(t.data.every(Number.isFinite), `${name} finite`);
  }
  // Structural spot checks against the raw file: the embedding is the first block after the 28-byte header,
  // the final norm follows the nine per-layer blocks.
  const raw = readFileSync(STORIES_BIN);
  const at = (floatIndex: number): number => raw.readFloatLE(28 + 4 * floatIndex);
  assert.equal(weights.get('model.embed_tokens.weight')!.get(3, 5), at(3 * 64 + 5));
  assert.equal(weights.get('model.layers.0.input_layernorm.weight')!.get(0), at(512 * 64));
  const beforeFinal = 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64);
  assert.equal(weights.get('model.norm.weight')!.get(7), at(beforeFinal + 7));
  // w1 is gate, w2 down, w3 up: layer 1 of w3 starts after all of w1 and w2.
  const w1Start = 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64);
  assert.equal(weights.get('model.layers.1.mlp.up_proj.weight')!.get(0, 0), at(w1Start + 2 * 5 * 172 * 64 + 172 * 64));
  assert.equal(weights.get('model.layers.2.mlp.down_proj.weight')!.get(1, 0), at(w1Start + 5 * 172 * 64 + 2 * 64 * 172 + 172));
});

/** A small llama2.c-format file with the given header and seeded weights (optional separate classifier). */
function writeCheckpoint(file: string, h: number[], seed: number): Float32Array {
  const [C, I, L, H, Hkv, Vs, T] = h as [number, number, number, number, number, number, number];
  const D = C / H;
  const V = Math.abs(Vs);
  const n = V * C + L * (2 * C + C * C * 2 + 2 * Hkv * D * C + 3 * I * C) + C + T * D + (Vs < 0 ? V * C : 0);
  const rng = mulberry32(seed);
  const w = new Float32Array(n).map(() => rng() - 0.5);
  writeFileSync(file, Buffer.concat([Buffer.from(Int32Array.from(h).buffer), Buffer.from(w.buffer)]));
  return w;
}

test('an unshared classifier (negative vocab_size) is read after freq_cis as lm_head', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'm.bin');
    const h = [16, 24, 2, 4, 2, -40, 10];
    const w = writeCheckpoint(file, h, 5);
    const { config, weights } = loadLlama2c(file);
    assert.equal(config.tieEmbeddings, false);
    assert.equal(config.vocabSize, 40);
    const head = weights.get('lm_head.weight')!;
    assert.deepEqual(head.shape, [40, 16]);
    assert.deepEqual([...head.data], [...w.subarray(w.length - 40 * 16)]);
    assert.notDeepEqual([...head.data], [...weights.get('model.embed_tokens.weight')!.data]);
  } finally {
    cleanup();
  }
});

test('malformed llama2.c checkpoints are rejected naming the file and the field', () => {
  const { dir, cleanup } = tempDir();
  try {
    const good = [16, 24, 2, 4, 2, 40, 10];
    const cases: { name: string; header: number[]; field: RegExp; trim?: number }[] = [
      { name: 'zero-dim', header: [0, 24, 2, 4, 2, 40, 10], field: /: dim: / },
      { name: 'neg-layers', header: [16, 24, -2, 4, 2, 40, 10], field: /: n_layers: / },
      { name: 'zero-vocab', header: [16, 24, 2, 4, 2, 0, 10], field: /: vocab_size: / },
      { name: 'heads-not-dividing', header: [16, 24, 2, 3, 1, 40, 10], field: /: n_heads: 3 does not divide dim 16/ },
      { name: 'kv-not-dividing', header: [16, 24, 2, 4, 3, 40, 10], field: /: n_kv_heads: / },
      { name: 'odd-head-size', header: [12, 24, 2, 4, 2, 40, 10], field: /: n_heads: head size/ },
      { name: 'short-file', header: good, field: /: file size: .*needs \d+ bytes, the file has/, trim: 4 },
    ];
    for (const c of cases) {
      const file = join(dir, `${c.name}.bin`);
      if (c.header === good) {
        writeCheckpoint(file, good, 1);
        writeFileSync(file, readFileSync(file).subarray(0, -(c.trim ?? 0)));
      } else {
        writeFileSync(file, Buffer.concat([Buffer.from(Int32Array.from(c.header).buffer), Buffer.alloc(4096)]));
      }
      assert.throws(
        () => loadLlama2c(file),
        (e: unknown) => e instanceof UserError && e.message.startsWith(`${file}: `) && c.field.test(e.message),
        c.name,
      );
    }
    const tiny = join(dir, 'tiny.bin');
    writeFileSync(tiny, Buffer.alloc(10));
    assert.throws(() => loadLlama2c(tiny), /tiny\.bin: header: expected 28 bytes/);
    const magic = join(dir, 'v1.bin');
    writeFileSync(magic, Buffer.concat([Buffer.from(Uint32Array.of(0x616b3432, 1).buffer), Buffer.alloc(300)]));
    assert.throws(() => loadLlama2c(magic), /versioned llama2\.c export/);
  } finally {
    cleanup();
  }
});

/** A literal port of run.c's encode() (O(n²) merge loop), the oracle for the heap version. */
function runcEncode(tok: Llama2cTokenizer, text: string, bos: boolean): number[] {
  const key = (b: Uint8Array): string => String.fromCharCode(...b);
  const sorted = new Map<string, number>();
  tok.pieces.forEach((p, i) => {
    if (!sorted.has(key(p))) sorted.set(key(p), i);
  });
  const lookup = (s: string): number => sorted.get(s) ?? -1; // run.c: bsearch over the sorted vocab
  const tokens: number[] = bos ? [1] : [];
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > 0) tokens.push(lookup(' '));
  let buf: number[] = [];
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c]! & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[c]!);
    if (c + 1 < bytes.length && (bytes[c + 1]! & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(String.fromCharCode(...buf));
    if (id !== -1) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(key(tok.pieces[tokens[i]!]!) + key(tok.pieces[tokens[i + 1]!]!));
      if (id !== -1 && tok.scores[id]! > bestScore) {
        bestScore = tok.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

test('tok512 encode matches run.c (heap merge vs the O(n²) loop) and round-trips English text', () => {
  const tok = loadLlama2cTokenizer(STORIES_TOK, 512);
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  const golden = readFileSync(STORIES_GOLDEN, 'utf8');
  const texts = [
    'Once upon a time, there was a little girl named Lily.',
    golden,
    'Hello world!\nThe cat sat on the mat; the dog (named "Max") ran 3.5 miles.',
    '',
    ' leading and trailing spaces  ',
    'Tom said:\t"Wow!"',
  ];
  for (const t of texts) {
    const ids = tok.encode(t, true);
    assert.deepEqual(ids, runcEncode(tok, t, true), JSON.stringify(t.slice(0, 40)));
    assert.equal(ids[0], 1);
    assert.ok(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 512));
    assert.equal(tok.decode(ids), t, 'decode(encode(text)) = text');
    assert.equal(tok.decode(tok.encode(t, false)), t);
  }
  assert.ok(tok.encode(golden, false).length < golden.length / 2, 'merges actually compress');
  // Random byte soup (ASCII, multi-byte UTF-8, control characters) through both implementations.
  const rng = mulberry32(99);
  const alphabet = ' abcdeLily,.!?\n"\'éß中😀\u0001';
  for (let k = 0; k < 30; k++) {
    const chars = Array.from({ length: 1 + Math.floor(rng() * 60) }, () => [...alphabet][Math.floor(rng() * [...alphabet].length)]!);
    const s = chars.join('');
    assert.deepEqual(tok.encode(s, k % 2 === 0), runcEncode(tok, s, k % 2 === 0), JSON.stringify(s));
  }
});

test('decode prints like run.c: BOS starts (unprinted) and a later BOS stops; <0xNN> bytes; lone non-printables dropped', () => {
  const tok = loadLlama2cTokenizer(STORIES_TOK, 512);
  const once = tok.encode('Once', false);
  assert.equal(tok.decode([1, ...once]), 'Once', 'leading space stripped after BOS');
  assert.equal(tok.decode([1, ...once, 1, ...once]), 'Once', 'a sampled BOS ends the text');
  assert.equal(tok.decode([1, 3 + 0x41, 3 + 0x0a]), 'A\n', 'byte pieces are raw bytes');
  assert.equal(tok.decode([1, 3 + 0x01, 3 + 0xc3]), '', 'lone control / high bytes are dropped (safe_printf)');
  assert.equal(tok.decode([]), '');
  assert.throws(() => tok.decode([1, 512]), RangeError);
  // 中 is not a piece in tok512: byte fallback encodes it, and run.c's printing then drops the lone bytes;
  // é is a piece, so it prints.
  const zh = tok.encode('中', false);
  assert.deepEqual(zh.slice(1), [3 + 0xe4, 3 + 0xb8, 3 + 0xad]);
  assert.equal(tok.decode([1, ...zh]), '');
  assert.equal(tok.decode([1, ...tok.encode('café', false)]), 'café');
});

test('tokenizer file validation names the file and the field', () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.throws(() => loadLlama2cTokenizer(STORIES_TOK, 600), /tok512\.bin: token 512: expected 600 tokens/);
    assert.throws(() => loadLlama2cTokenizer(STORIES_TOK, 300), /tok512\.bin: size: .*wrong vocab size/);
    const bad = join(dir, 'bad.bin');
    const b = Buffer.from(readFileSync(STORIES_TOK));
    b.writeInt32LE(-5, 4 + 4); // token 0's length
    writeFileSync(bad, b);
    assert.throws(() => loadLlama2cTokenizer(bad, 512), /bad\.bin: token 0\.length/);
  } finally {
    cleanup();
  }
});

/** run.c's forward for one token (f64 arithmetic over the loaded f32 weights), returning the logits. */
function makeForward(cfg: ModelConfig, w: Map<string, Tensor>): (token: number, pos: number) => Float64Array {
  const { hiddenSize: C, intermediateSize: I, numLayers: L, numHeads: H, vocabSize: V } = cfg;
  const a = cfg.layers[0]!;
  assert.ok(a.kind === 'gqa');
  const { numKvHeads: Hkv, headDim: D } = a;
  const W = (n: string): Float32Array => w.get(n)!.data as Float32Array;
  const kvDim = Hkv * D;
  const kc = Array.from({ length: L }, () => new Float64Array(cfg.maxPositions * kvDim));
  const vc = Array.from({ length: L }, () => new Float64Array(cfg.maxPositions * kvDim));
  const matvec = (m: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array => {
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += m[r * cols + c]! * x[c]!;
      y[r] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, g: Float32Array): Float64Array => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const k = 1 / Math.sqrt(ss / x.length + cfg.rmsNormEps);
    return x.map((v, i) => v * k * g[i]!);
  };
  return (token, pos) => {
    const x = Float64Array.from(W('model.embed_tokens.weight').subarray(token * C, (token + 1) * C));
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      const xb = rms(x, W(`${p}.input_layernorm.weight`));
      const q = matvec(W(`${p}.self_attn.q_proj.weight`), xb, H * D, C);
      const k = matvec(W(`${p}.self_attn.k_proj.weight`), xb, kvDim, C);
      const v = matvec(W(`${p}.self_attn.v_proj.weight`), xb, kvDim, C);
      // adjacent-pair RoPE, as in run.c
      for (let i = 0; i < H * D; i += 2) {
        const ang = pos * cfg.ropeInvFreq[(i % D) / 2]!;
        const [cs, sn] = [Math.cos(ang), Math.sin(ang)];
        for (const vec of i < kvDim ? [q, k] : [q]) {
          const [a0, a1] = [vec[i]!, vec[i + 1]!];
          vec[i] = a0 * cs - a1 * sn;
          vec[i + 1] = a0 * sn + a1 * cs;
        }
      }
      kc[l]!.set(k, pos * kvDim);
      vc[l]!.set(v, pos * kvDim);
      const out = new Float64Array(H * D);
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / (H / Hkv));
        const att = new Float64Array(pos + 1);
        for (let t = 0; t <= pos; t++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[h * D + d]! * kc[l]![t * kvDim + kvh * D + d]!;
          att[t] = s / Math.sqrt(D);
        }
        const mx = Math.max(...att);
        let sum = 0;
        for (let t = 0; t <= pos; t++) sum += att[t] = Math.exp(att[t]! - mx);
        for (let t = 0; t <= pos; t++) {
          for (let d = 0; d < D; d++) out[h * D + d]! += (att[t]! / sum) * vc[l]![t * kvDim + kvh * D + d]!;
        }
      }
      const o = matvec(W(`${p}.self_attn.o_proj.weight`), out, C, H * D);
      for (let i = 0; i < C; i++) x[i]! += o[i]!;
      const xf = rms(x, W(`${p}.post_attention_layernorm.weight`));
      const g = matvec(W(`${p}.mlp.gate_proj.weight`), xf, I, C);
      const u = matvec(W(`${p}.mlp.up_proj.weight`), xf, I, C);
      const hdn = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
      const dn = matvec(W(`${p}.mlp.down_proj.weight`), hdn, C, I);
      for (let i = 0; i < C; i++) x[i]! += dn[i]!;
    }
    const head = cfg.tieEmbeddings ? W('model.embed_tokens.weight') : W('lm_head.weight');
    return matvec(head, rms(x, W('model.norm.weight')), V, C);
  };
}

test('loaded stories260K + tok512: greedy 200 tokens from BOS decode to the golden text byte for byte', () => {
  const { config, weights } = loadLlama2c(STORIES_BIN);
  const tok = loadLlama2cTokenizer(STORIES_TOK, config.vocabSize);
  const forward = makeForward(config, weights);
  const ids = [1];
  let token = 1;
  for (let pos = 0; pos < 200; pos++) {
    const logits = forward(token, pos);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    ids.push(best);
    token = best;
  }
  assert.equal(tok.decode(ids), readFileSync(STORIES_GOLDEN, 'utf8'));
});

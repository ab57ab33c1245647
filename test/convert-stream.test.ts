// The streamed conversion (convert/stream.ts: one layer read, converted and written at a time) against the in-memory
// one (convert() then saveConverted()): the same files, byte for byte, where the output's shapes are known up front,
// the same tensors bit for bit where an energy plan picks the ranks later; and a failure in the middle of the model
// leaves no output at all.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { saveHfModel } from '../src/io/hf.js';
import { loadModel, openWeights } from '../src/io/load.js';
import { readSafetensors } from '../src/io/safetensors.js';
import type { SafetensorsDtype } from '../src/io/safetensors.js';
import { UserError } from '../src/errors.js';
import { convert, needsCalibration, type ConvertOptions } from '../src/convert/convert.js';
import { convertToDir } from '../src/convert/stream.js';
import { checkHalf } from '../src/io/source.js';
import { saveConverted } from '../src/convert/record.js';
import { STORIES_BIN, tempDir } from './helpers.js';

const be = getBackend('auto');

/** A random 4-layer GQA checkpoint (llama, or qwen2 with q/k/v biases) with weights ~N(0, 0.3), norms ~1. */
function randomCheckpoint(seed: number, bias: boolean, plant?: { name: string; index: number }): { config: ModelConfig; weights: Map<string, Tensor> } {
  const rng = mulberry32(seed);
  const L = 4;
  const config: ModelConfig = {
    arch: bias ? 'qwen2' : 'llama', vocabSize: 67, hiddenSize: 48, intermediateSize: 56, numLayers: L, numHeads: 4,
    rmsNormEps: 1e-6, ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 12), ropeTheta: 10000, ropeScaling: null,
    maxPositions: 64, tieEmbeddings: seed % 2 === 0, bosTokenId: 1, eosTokenId: 2,
    layers: Array.from({ length: L }, () => ({ kind: 'gqa' as const, numKvHeads: 2, headDim: 12, qkvBias: bias })),
  };
  const weights = new Map<string, Tensor>();
  for (const s of modelTensors(config)) {
    const t = Tensor.zeros(s.shape);
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    for (let i = 0; i < t.size; i++) t.data[i] = isNorm ? 1 + 0.1 * gaussian(rng) : 0.3 * gaussian(rng);
    if (plant?.name === s.name) t.data[plant.index] = NaN;
    weights.set(s.name, t);
  }
  return { config, weights };
}

function opts(over: Partial<ConvertOptions>): ConvertOptions {
  return {
    plan: { kind: 'ratio', ratio: 2 }, ropeMethod: 'ecomla', basis: 'weight', qRank: null, latentNorm: false, nopeInit: 'identity', keepLayers: [],
    calib: { samples: 2, length: 16, seed: 3 }, ...over,
  };
}

/** Both ways: convert() + saveConverted() into `a`, convertToDir() into `b` (the teacher read tensor by tensor). */
function bothWays(input: string, o: ConvertOptions, a: string, b: string, dtype: SafetensorsDtype, streamDtype?: SafetensorsDtype): void {
  const loaded = loadModel(input);
  const model = Model.fromWeights(loaded.config, loaded.weights, be);
  saveConverted(a, o, convert(model, loaded.tokenizer, o), { source: input, dtype });
  const opened = openWeights(input);
  try {
    convertToDir({ config: opened.config, be, weights: opened.weights, model: needsCalibration(o) ? model : null }, opened.tokenizer, o, b, { source: input, dtype: streamDtype });
  } finally {
    opened.weights.close();
  }
}

const bytes = (dir: string, f: string): Buffer => readFileSync(join(dir, f));

test('streamed conversion writes the in-memory conversion byte for byte (bf16 HF checkpoint, sharded; llama2.c)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [string, boolean, Partial<ConvertOptions>][] = [
      ['llama', false, {}],
      ['qwen2 bias, kept layer 1, rank plan', true, { plan: { kind: 'rank', rank: 12 }, keepLayers: [1] }],
      ['calibrated defaults', false, { ropeMethod: 'transmla', basis: 'activation', nopeInit: 'mean-rotation', latentNorm: true, qRank: 24 }],
      ['no-rope keys dropped', true, { nopeKeys: 'drop', plan: { kind: 'rank', rank: 16 } }],
    ];
    cases.forEach(([what, bias, over], k) => {
      const src = join(dir, `hf${k}`);
      const ck = randomCheckpoint(10 + k, bias);
      saveHfModel(src, ck.config, ck.weights, 'BF16', { maxShardBytes: 20_000 });
      assert.ok(existsSync(join(src, 'model.safetensors.index.json')), 'sharded input');
      const a = join(dir, `a${k}`);
      const b = join(dir, `b${k}`);
      // The default dtype keeps bf16 (in-memory save told BF16), and f32 when asked for.
      bothWays(src, opts(over), a, b, 'BF16');
      bothWays(src, opts(over), a + 'f', b + 'f', 'F32', 'F32');
      for (const [x, y] of [[a, b], [a + 'f', b + 'f']] as const) {
        for (const f of ['model.safetensors', 'config.json', 'conversion.json']) assert.ok(bytes(x, f).equals(bytes(y, f)), `${what}: ${f} differs (${y})`);
        assert.deepEqual(readdirSync(x).sort(), readdirSync(y).sort());
      }
      assert.equal(readSafetensors(join(b, 'model.safetensors')).tensors.get('model.layers.0.mlp.up_proj.weight')!.dtype, 'BF16');
      assert.equal(readSafetensors(join(b + 'f', 'model.safetensors')).tensors.get('model.layers.0.mlp.up_proj.weight')!.dtype, 'F32');
    });
    bothWays(STORIES_BIN, opts({ ropeDim: 4 }), join(dir, 'sa'), join(dir, 'sb'), 'F32');
    for (const f of ['model.safetensors', 'config.json', 'conversion.json']) assert.ok(bytes(join(dir, 'sa'), f).equals(bytes(join(dir, 'sb'), f)), `stories260K: ${f} differs`);
  } finally {
    cleanup();
  }
});

test('streamed conversion with an energy plan (ranks known only per layer): the same tensors bit for bit', () => {
  const { dir, cleanup } = tempDir();
  try {
    const src = join(dir, 'hf');
    const ck = randomCheckpoint(21, true);
    saveHfModel(src, ck.config, ck.weights, 'BF16');
    const o = opts({ plan: { kind: 'energy', delta: 0.6 }, keepLayers: [2] });
    bothWays(src, o, join(dir, 'a'), join(dir, 'b'), 'BF16');
    const ta = readSafetensors(join(dir, 'a', 'model.safetensors')).tensors;
    const tb = readSafetensors(join(dir, 'b', 'model.safetensors')).tensors;
    assert.deepEqual([...tb.keys()], [...ta.keys()]);
    const ranks = JSON.parse(readFileSync(join(dir, 'b', 'conversion.json'), 'utf8')).layers.map((l: { kvRank: number | null }) => l.kvRank);
    assert.ok(ranks.some((r: number | null) => r !== null && r < 48), `an energy plan below the bound, got ranks ${ranks}`);
    for (const [name, t] of ta) {
      const u = tb.get(name)!;
      assert.deepEqual(u.shape, t.shape, name);
      assert.deepEqual(u.bits, t.bits, name);
    }
    assert.ok(bytes(join(dir, 'a'), 'config.json').equals(bytes(join(dir, 'b'), 'config.json')));
  } finally {
    cleanup();
  }
});

test('a NaN in layer 2 stops the streamed conversion with the tensor named, and no output is left', () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const name of ['model.layers.2.self_attn.k_proj.weight', 'model.layers.2.mlp.down_proj.weight']) {
      const src = join(dir, 'hf');
      const ck = randomCheckpoint(31, false, { name, index: 17 });
      saveHfModel(src, ck.config, ck.weights, 'BF16', { overwrite: true });
      const out = join(dir, 'nested', 'out');
      const opened = openWeights(src);
      try {
        assert.throws(
          () => convertToDir({ config: opened.config, be, weights: opened.weights, model: null }, null, opts({}), out, { source: src }),
          (e: unknown) => e instanceof UserError && e.message.includes(`tensor ${name}: NaN at element [0, 17]`),
        );
      } finally {
        opened.weights.close();
      }
      assert.ok(!existsSync(join(dir, 'nested')), `${name}: nothing written (${existsSync(join(dir, 'nested')) ? readdirSync(join(dir, 'nested')).join(', ') : ''})`);
    }
  } finally {
    cleanup();
  }
});

test('checkHalf flags exactly the non-finite bf16 and f16 patterns, at aligned and unaligned offsets', () => {
  const bf16 = new Float32Array(1);
  const u = new Uint32Array(bf16.buffer);
  for (const dtype of ['BF16', 'F16'] as const) {
    for (let b = 0; b < 65536; b++) {
      u[0] = b << 16;
      const finite = dtype === 'BF16' ? Number.isFinite(bf16[0]!) : (b & 0x7c00) !== 0x7c00;
      for (const off of [0, 1, 2]) {
        const arr = new Uint16Array(6).fill(0x3c00);
        arr[off + 2] = b;
        const piece = arr.subarray(off, off + 5); // off 1: not 4-byte aligned
        let threw = false;
        try {
          checkHalf('f', 'w', [20], dtype, piece, 10);
        } catch (e) {
          threw = e instanceof UserError && /at element \[12\]/.test(e.message);
        }
        if (threw === finite) assert.fail(`${dtype} 0x${b.toString(16)} at offset ${off}: ${finite ? 'flagged' : 'missed'}`);
      }
    }
  }
});

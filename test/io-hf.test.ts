// HF llama-family checkpoints: save → load round trips (single file, sharded, F32/BF16), both RoPE
// spellings, llama3 scaling against hand values, tied/untied heads, head_dim ≠ hidden/heads, Qwen2 biases,
// and the refusals (missing/mis-shaped/unexpected tensors, QK-norm, unknown types, bad fields).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../src/tensor/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { UserError } from '../src/errors.js';
import { expectedGqaTensors, loadHfModel, saveHfModel } from '../src/io/hf.js';
import { bf16ToF32, f32ToBf16 } from '../src/io/dtype.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { tempDir } from './helpers.js';

interface Dims {
  arch?: 'llama' | 'qwen2' | 'mistral';
  V?: number;
  C?: number;
  I?: number;
  L?: number;
  H?: number;
  Hkv?: number;
  D?: number;
  tie?: boolean;
  bias?: boolean;
}

function makeConfig(d: Dims = {}): ModelConfig {
  const { arch = 'llama', V = 37, C = 24, I = 40, L = 2, H = 4, Hkv = 2, tie = false } = d;
  const D = d.D ?? C / H;
  const bias = d.bias ?? arch === 'qwen2';
  return {
    arch,
    vocabSize: V,
    hiddenSize: C,
    intermediateSize: I,
    numLayers: L,
    numHeads: H,
    rmsNormEps: 1e-6,
    ropePairing: 'half',
    ropeInvFreq: defaultInvFreq(10000, D),
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositions: 128,
    tieEmbeddings: tie,
    bosTokenId: 1,
    eosTokenId: 2,
    layers: Array.from({ length: L }, () => ({ kind: 'gqa' as const, numKvHeads: Hkv, headDim: D, qkvBias: bias })),
  };
}

function randomWeights(cfg: ModelConfig, seed: number): Map<string, Tensor> {
  const rng = mulberry32(seed);
  return new Map(expectedGqaTensors(cfg).map((s) => [s.name, Tensor.rand(s.shape, rng)]));
}

/** Save a random model and return its directory, config and weights. */
function saved(root: string, name: string, d: Dims = {}, seed = 1): { dir: string; cfg: ModelConfig; w: Map<string, Tensor> } {
  const cfg = makeConfig(d);
  const w = randomWeights(cfg, seed);
  const dir = join(root, name);
  saveHfModel(dir, cfg, w, 'F32');
  return { dir, cfg, w };
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

function assertSameWeights(a: Map<string, Tensor>, b: Map<string, Tensor>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) {
    const u = b.get(k)!;
    assert.deepEqual(u.shape, t.shape, k);
    assert.ok(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)), k);
  }
}

const userErr = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);

test('llama save → load round trip: config fields and bitwise F32 weights; BF16 rounds on save', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const { dir, cfg, w } = saved(root, 'm');
    assert.deepEqual(readdirSync(root), ['m'], 'no temporary directory left');
    const m = loadHfModel(dir);
    assert.deepEqual(m.config, cfg);
    assertSameWeights(w, m.weights);
    const names = [...m.weights.keys()];
    assert.ok(names.includes('model.layers.1.self_attn.q_proj.weight'));
    assert.deepEqual(m.weights.get('model.layers.0.self_attn.k_proj.weight')!.shape, [12, 24]);

    const bdir = join(root, 'bf16');
    saveHfModel(bdir, cfg, w, 'BF16');
    assert.equal(JSON.parse(readFileSync(join(bdir, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    const b = loadHfModel(bdir);
    for (const [k, t] of w) {
      assert.deepEqual([...b.weights.get(k)!.toHost()], [...bf16ToF32(f32ToBf16(t.data as Float32Array))], k);
    }
    // Refuses to overwrite a non-empty directory unless asked.
    assert.throws(() => saveHfModel(dir, cfg, w), userErr(/already exists/));
    saveHfModel(dir, cfg, randomWeights(cfg, 9), 'F32', { overwrite: true });
    assertSameWeights(randomWeights(cfg, 9), loadHfModel(dir).weights);
    assert.deepEqual(readdirSync(root).sort(), ['bf16', 'm']);
  } finally {
    cleanup();
  }
});

test('sharded checkpoint with model.safetensors.index.json', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const cfg = makeConfig({ L: 3 });
    const w = randomWeights(cfg, 4);
    const dir = join(root, 's');
    saveHfModel(dir, cfg, w, 'F32', { maxShardBytes: 8000 });
    const files = readdirSync(dir).sort();
    assert.ok(files.includes('model.safetensors.index.json'));
    assert.ok(!files.includes('model.safetensors'));
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    assert.ok(shards.length >= 3, `shards: ${shards.join(', ')}`);
    assertSameWeights(w, loadHfModel(dir).weights);

    // The index is what decides which shard holds a tensor.
    const idxFile = join(dir, 'model.safetensors.index.json');
    const idx = JSON.parse(readFileSync(idxFile, 'utf8')) as { weight_map: Record<string, string> };
    const name = 'model.layers.2.mlp.down_proj.weight';
    const good = idx.weight_map[name]!;
    const wrong = shards.find((s) => s !== good)!;
    writeFileSync(idxFile, JSON.stringify({ weight_map: { ...idx.weight_map, [name]: wrong } }));
    assert.throws(() => loadHfModel(dir), userErr(new RegExp(`index\\.json: weight_map\\.${name.replace(/\./g, '\\.')}: tensor not found in shard ${wrong}`)));
    writeFileSync(idxFile, JSON.stringify({ weight_map: { ...idx.weight_map, [name]: 'model-00099-of-00099.safetensors' } }));
    assert.throws(() => loadHfModel(dir), userErr(/lists shard model-00099-of-00099\.safetensors, which does not exist/));
    writeFileSync(idxFile, JSON.stringify({ weight_map: { ...idx.weight_map, [name]: '../escape.safetensors' } }));
    assert.throws(() => loadHfModel(dir), userErr(/expected a file name in the same directory/));
    writeFileSync(idxFile, JSON.stringify({ metadata: {} }));
    assert.throws(() => loadHfModel(dir), userErr(/index\.json: weight_map: missing/));
    unlinkSync(idxFile);
    assert.throws(() => loadHfModel(dir), userErr(/no model\.safetensors or model\.safetensors\.index\.json/));
  } finally {
    cleanup();
  }
});

test('rope_theta at the top level and inside rope_parameters (transformers 5) read the same', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const { dir } = saved(root, 'r', { C: 32, H: 4 });
    editConfig(dir, (c) => {
      c.rope_theta = 500000;
      delete c.rope_scaling;
    });
    const top = loadHfModel(dir).config;
    editConfig(dir, (c) => {
      delete c.rope_theta;
      c.rope_parameters = { rope_type: 'default', rope_theta: 500000 };
    });
    const nested = loadHfModel(dir).config;
    assert.equal(top.ropeTheta, 500000);
    assert.equal(nested.ropeTheta, 500000);
    assert.deepEqual(nested.ropeInvFreq, top.ropeInvFreq);
    assert.equal(nested.ropeScaling, null);
    assert.ok(Math.abs(top.ropeInvFreq[1]! - 500000 ** (-2 / 8)) < 1e-15);
    editConfig(dir, (c) => {
      delete c.rope_parameters;
    });
    assert.equal(loadHfModel(dir).config.ropeTheta, 10000, 'transformers default');
  } finally {
    cleanup();
  }
});

test('llama3 rope scaling (either spelling) matches hand-computed inverse frequencies', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    // head_dim 64, theta 500000, factor 8, low 1, high 4, original 8192 (Llama-3.1's values).
    // Pairs 0 and 10: wavelength < 2048, unchanged; 15 and 16: interpolated; 31: wavelength > 8192, divided by 8.
    const hand: [number, number][] = [
      [0, 1.0],
      [10, 0.016560440080994446],
      [15, 0.0013718935677611381],
      [16, 0.0005248461609929547],
      [31, 3.767322690173964e-7],
    ];
    const { dir } = saved(root, 'l3', { C: 128, H: 2, Hkv: 1, I: 16, V: 11, L: 1 });
    const scaling = { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
    const spellings: ((c: Record<string, unknown>) => void)[] = [
      (c) => {
        c.rope_theta = 500000;
        c.rope_scaling = { rope_type: 'llama3', ...scaling };
      },
      (c) => {
        c.rope_theta = 500000;
        c.rope_scaling = { type: 'llama3', ...scaling };
      },
      (c) => {
        delete c.rope_theta;
        delete c.rope_scaling;
        c.rope_parameters = { rope_type: 'llama3', rope_theta: 500000, ...scaling };
      },
    ];
    for (const edit of spellings) {
      editConfig(dir, (c) => {
        delete c.rope_parameters;
        edit(c);
      });
      const cfg = loadHfModel(dir).config;
      assert.equal(cfg.ropeInvFreq.length, 32);
      for (const [i, v] of hand) assert.ok(Math.abs(cfg.ropeInvFreq[i]! - v) <= 1e-12 * v, `pair ${i}: ${cfg.ropeInvFreq[i]} vs ${v}`);
      assert.equal(cfg.ropeScaling?.rope_type, 'llama3');
      assert.equal(cfg.ropeScaling?.factor, 8);
    }
    // A llama3-scaled model saves and loads back to the same frequencies.
    const m = loadHfModel(dir);
    const again = join(root, 'again');
    saveHfModel(again, m.config, m.weights);
    assert.deepEqual(loadHfModel(again).config.ropeInvFreq, m.config.ropeInvFreq);

    editConfig(dir, (c) => {
      c.rope_parameters = { rope_type: 'yarn', rope_theta: 10000, factor: 4 };
    });
    assert.throws(() => loadHfModel(dir), userErr(/config\.json: rope_parameters\.rope_type: rope type "yarn" is not supported/));
    editConfig(dir, (c) => {
      delete c.rope_parameters;
      c.rope_scaling = { type: 'linear', factor: 2 };
    });
    assert.throws(() => loadHfModel(dir), userErr(/rope_scaling\.type: rope type "linear" is not supported/));
    editConfig(dir, (c) => {
      c.rope_scaling = { rope_type: 'llama3', factor: 8 };
    });
    assert.throws(() => loadHfModel(dir), userErr(/rope_scaling\.low_freq_factor: expected a positive number, missing/));
  } finally {
    cleanup();
  }
});

test('tied and untied heads', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const tied = saved(root, 'tied', { tie: true });
    const m = loadHfModel(tied.dir);
    assert.equal(m.config.tieEmbeddings, true);
    assert.equal(m.weights.has('lm_head.weight'), false);
    assert.equal(readSafetensors(join(tied.dir, 'model.safetensors')).tensors.has('lm_head.weight'), false);

    // A tied checkpoint that also stores the head loads (the embedding is used).
    const st = join(tied.dir, 'model.safetensors');
    const all = [...readSafetensors(st).tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    all.push({ name: 'lm_head.weight', shape: [37, 24], data: tied.w.get('model.embed_tokens.weight')!.data as Float32Array });
    writeSafetensors(st, all);
    assert.equal(loadHfModel(tied.dir).weights.has('lm_head.weight'), false);

    const untied = saved(root, 'untied', { tie: false });
    assert.deepEqual(loadHfModel(untied.dir).weights.get('lm_head.weight')!.shape, [37, 24]);
    editConfig(untied.dir, (c) => {
      delete c.tie_word_embeddings; // transformers' Llama default: untied
    });
    assert.equal(loadHfModel(untied.dir).config.tieEmbeddings, false);
    const ust = join(untied.dir, 'model.safetensors');
    writeSafetensors(
      ust,
      [...readSafetensors(ust).tensors].filter(([n]) => n !== 'lm_head.weight').map(([name, t]) => ({ name, shape: t.shape, data: t.data })),
    );
    assert.throws(() => loadHfModel(untied.dir), userErr(/tensor lm_head\.weight: missing \(expected shape \[37, 24\]\).*tie_word_embeddings/));
  } finally {
    cleanup();
  }
});

test('head_dim different from hidden/heads, GQA and MHA, Qwen2 biases, eos lists', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const hd = saved(root, 'hd', { C: 32, H: 4, Hkv: 2, D: 16 });
    const m = loadHfModel(hd.dir);
    assert.equal(JSON.parse(readFileSync(join(hd.dir, 'config.json'), 'utf8')).head_dim, 16);
    assert.deepEqual(m.config.layers[0], { kind: 'gqa', numKvHeads: 2, headDim: 16, qkvBias: false });
    assert.deepEqual(m.weights.get('model.layers.0.self_attn.q_proj.weight')!.shape, [64, 32]);
    assert.deepEqual(m.weights.get('model.layers.0.self_attn.o_proj.weight')!.shape, [32, 64]);
    assert.equal(m.config.ropeInvFreq.length, 8);

    const mha = saved(root, 'mha', { Hkv: 4 });
    editConfig(mha.dir, (c) => {
      delete c.num_key_value_heads;
    });
    const mm = loadHfModel(mha.dir).config.layers[0]!;
    assert.ok(mm.kind === 'gqa' && mm.numKvHeads === 4, 'num_key_value_heads defaults to num_attention_heads');

    const q = saved(root, 'qwen', { arch: 'qwen2' });
    editConfig(q.dir, (c) => {
      c.eos_token_id = [2, 5];
      c.bos_token_id = null;
    });
    const qm = loadHfModel(q.dir);
    assert.equal(qm.config.arch, 'qwen2');
    assert.equal(qm.config.ropePairing, 'half');
    assert.equal(qm.config.eosTokenId, 2);
    assert.equal(qm.config.bosTokenId, null);
    assert.ok(qm.config.layers.every((l) => l.kind === 'gqa' && l.qkvBias));
    assertSameWeights(q.w, qm.weights);
    assert.deepEqual(qm.weights.get('model.layers.1.self_attn.k_proj.bias')!.shape, [12]);

    // Llama with attention_bias: q/k/v biases, and transformers' o_proj bias (saved as zeros) accepted.
    const lb = saved(root, 'llama-bias', { bias: true });
    const lbm = loadHfModel(lb.dir);
    assert.ok(lbm.config.layers.every((l) => l.kind === 'gqa' && l.qkvBias));
    assert.ok(readSafetensors(join(lb.dir, 'model.safetensors')).tensors.has('model.layers.0.self_attn.o_proj.bias'));
    assert.equal(lbm.weights.has('model.layers.0.self_attn.o_proj.bias'), false);

    // Mistral: a sliding window caps the positions the model is exact for.
    const mi = saved(root, 'mistral', { arch: 'mistral' });
    editConfig(mi.dir, (c) => {
      c.sliding_window = 64;
    });
    assert.equal(loadHfModel(mi.dir).config.maxPositions, 64);
  } finally {
    cleanup();
  }
});

test('missing, mis-shaped and unexpected tensors are refused naming the tensor, file and shapes', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const { dir } = saved(root, 'x');
    const st = join(dir, 'model.safetensors');
    const orig = [...readSafetensors(st).tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    const rewrite = (entries: typeof orig): void => writeSafetensors(st, entries);

    rewrite(orig.filter((e) => e.name !== 'model.layers.1.mlp.up_proj.weight'));
    assert.throws(() => loadHfModel(dir), userErr(/tensor model\.layers\.1\.mlp\.up_proj\.weight: missing \(expected shape \[40, 24\]\)/));

    rewrite(orig.map((e) => (e.name === 'model.layers.0.self_attn.v_proj.weight' ? { ...e, shape: [24, 12] } : e)));
    assert.throws(
      () => loadHfModel(dir),
      userErr(/model\.safetensors: tensor model\.layers\.0\.self_attn\.v_proj\.weight: expected shape \[12, 24\], found \[24, 12\]/),
    );

    rewrite([...orig, { name: 'model.layers.0.mlp.extra.weight', shape: [2], data: new Float32Array(2) }]);
    assert.throws(() => loadHfModel(dir), userErr(/unexpected tensors for a llama model: model\.layers\.0\.mlp\.extra\.weight/));

    rewrite([...orig, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [3], data: new Float32Array(3) }]);
    assert.equal(loadHfModel(dir).weights.size, orig.length, 'old rotary buffers are ignored');

    rewrite([...orig, { name: 'model.layers.0.self_attn.o_proj.bias', shape: [24], data: new Float32Array(24).fill(0.5) }]);
    assert.throws(() => loadHfModel(dir), userErr(/o_proj\.bias: a non-zero o_proj bias is not supported/));
  } finally {
    cleanup();
  }
});

test('QK-norm models, unknown model types and bad config fields are refused clearly', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const { dir } = saved(root, 'q');
    const cfgFile = join(dir, 'config.json');
    const base = readFileSync(cfgFile, 'utf8');
    const cases: [(c: Record<string, unknown>) => void, RegExp][] = [
      [(c) => (c.model_type = 'qwen3'), /config\.json: model_type "qwen3": this model applies QK-norm/],
      [(c) => (c.model_type = 'gemma3'), /QK-norm/],
      [(c) => (c.model_type = 'olmo2'), /QK-norm/],
      [(c) => (c.model_type = 'gpt2'), /config\.json: model_type: "gpt2" is not supported/],
      [(c) => delete c.model_type, /config\.json: model_type: expected a string, missing/],
      [(c) => delete c.hidden_size, /config\.json: hidden_size: expected an integer ≥ 1, missing/],
      [(c) => (c.num_hidden_layers = '2'), /config\.json: num_hidden_layers: expected an integer ≥ 1, got "2"/],
      [(c) => (c.intermediate_size = 1.5), /config\.json: intermediate_size: expected an integer/],
      [(c) => (c.rms_norm_eps = -1), /config\.json: rms_norm_eps: expected a positive number/],
      [(c) => (c.num_key_value_heads = 3), /config\.json: num_key_value_heads: 3 must divide num_attention_heads \(4\)/],
      [(c) => (c.hidden_act = 'gelu'), /config\.json: hidden_act: only "silu"/],
      [(c) => (c.tie_word_embeddings = 'yes'), /config\.json: tie_word_embeddings: expected true or false/],
      [(c) => (c.eos_token_id = 'x'), /config\.json: eos_token_id: expected a token id/],
      [(c) => (c.architectures = ['LlamaForSequenceClassification']), /config\.json: architectures: expected a \.\.\.ForCausalLM class/],
      [(c) => (c.mlp_bias = true), /config\.json: mlp_bias/],
      [(c) => (c.head_dim = 7), /config\.json: head_dim: RoPE needs an even head dimension/],
    ];
    for (const [edit, re] of cases) {
      writeFileSync(cfgFile, base);
      editConfig(dir, edit);
      assert.throws(() => loadHfModel(dir), userErr(re), String(re));
    }
    writeFileSync(cfgFile, '{"model_type": "llama",');
    assert.throws(() => loadHfModel(dir), userErr(/config\.json: \(whole file\): valid JSON/));
    writeFileSync(cfgFile, base);

    // A QK-norm tensor in an otherwise llama-looking checkpoint.
    const st = join(dir, 'model.safetensors');
    const entries = [...readSafetensors(st).tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    writeSafetensors(st, [...entries, { name: 'model.layers.0.self_attn.q_norm.weight', shape: [6], data: new Float32Array(6) }]);
    assert.throws(() => loadHfModel(dir), userErr(/tensor model\.layers\.0\.self_attn\.q_norm\.weight: this model applies QK-norm/));

    renameSync(cfgFile, cfgFile + '.gone');
    assert.throws(() => loadHfModel(dir), userErr(/config\.json: file not found/));
    assert.throws(() => loadHfModel(join(root, 'nope')), userErr(/not a directory/));
    assert.ok(existsSync(cfgFile + '.gone'));
  } finally {
    cleanup();
  }
});

test('saveHfModel refuses what the HF layout cannot express', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const cfg = makeConfig();
    const w = randomWeights(cfg, 3);
    assert.throws(() => saveHfModel(join(root, 'a'), { ...cfg, ropePairing: 'adjacent' }, w), userErr(/half-split RoPE/));
    assert.throws(() => saveHfModel(join(root, 'b'), { ...cfg, ropeInvFreq: cfg.ropeInvFreq.map((f) => f * 2) }, w), userErr(/ropeInvFreq does not match/));
    const missing = new Map(w);
    missing.delete('model.norm.weight');
    assert.throws(() => saveHfModel(join(root, 'c'), cfg, missing), userErr(/tensor model\.norm\.weight: missing/));
    assert.deepEqual(readdirSync(root), [], 'nothing written on failure');
  } finally {
    cleanup();
  }
});

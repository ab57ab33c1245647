// No silent wrong numbers (issue 11): non-finite weights are refused at load (naming file, tensor and element), a
// forward pass that overflows stops ppl / eval / compare / generate / distill with one line saying what went
// non-finite, convert refuses non-finite weights and calibration statistics before svd/eigh, and the cpu backend
// gives NaN exactly where the ref backend does on a model with a NaN weight (the op-level check of every kernel is
// the non-finite pass of conformance.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { NonFiniteInputError, firstNonFinite } from '../src/tensor/finite.js';
import { noGrad } from '../src/autograd/var.js';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { loadCpuBackend } from '../src/backends/cpu/index.js';
import { tsLinalg } from '../src/linalg/ts-linalg.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { NonFiniteError } from '../src/model/finite.js';
import { loadModel } from '../src/io/load.js';
import { saveHfModel } from '../src/io/hf.js';
import { saveModelDir } from '../src/io/deepseek.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { checkpointDir, loadCheckpoint } from '../src/train/checkpoint.js';
import { resolveSettings } from '../src/train/run.js';
import { stateJson } from '../src/io/run-files.js';
import { UserError } from '../src/errors.js';
import { convert, type ConvertOptions } from '../src/convert/convert.js';
import { FIXTURES, STORIES_BIN, STORIES_TOK, mla, mlaOk, tempDir } from './helpers.js';
import { randomLlama } from './models.js';

const TASKS = join(FIXTURES, 'tasks', 'next-word.jsonl');
const TEXT = 'Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Sam.';

const convertOpts: ConvertOptions = {
  plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'transmla', basis: 'activation', qRank: null, latentNorm: false,
  nopeInit: 'mean-rotation', keepLayers: [], calib: { file: join(FIXTURES, 'heldout', 'stories-calib.txt'), samples: 2, length: 16, seed: 1 },
};

/** Float offsets (after the 28-byte header) of stories260K's llama2.c blocks, from its header. */
function storiesLayout(): { bytes: Buffer; block: Record<string, number>; C: number; I: number } {
  const bytes = readFileSync(STORIES_BIN);
  const [C, I, L, H, Hkv, V] = Array.from(new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 28)));
  const D = C! / H!;
  const sizes: [string, number][] = [
    ['token_embedding', Math.abs(V!) * C!], ['rms_att', L! * C!], ['wq', L! * C! * C!], ['wk', L! * C! * Hkv! * D],
    ['wv', L! * C! * Hkv! * D], ['wo', L! * C! * C!], ['rms_ffn', L! * C!], ['w1', L! * I! * C!], ['w2', L! * C! * I!],
    ['w3', L! * I! * C!], ['rms_final', C!],
  ];
  const block: Record<string, number> = {};
  let at = 0;
  for (const [name, n] of sizes) {
    block[name] = at;
    at += n;
  }
  return { bytes, block, C: C!, I: I! };
}

/** A copy of stories260K.bin with `values` written at the given float offsets. */
function plantedBin(file: string, values: [number, number][]): string {
  const { bytes } = storiesLayout();
  const copy = Buffer.from(bytes);
  for (const [at, v] of values) copy.writeFloatLE(v, 28 + 4 * at);
  writeFileSync(file, copy);
  return file;
}

/** One stderr line, no stack trace, exit 1. */
function assertOneLineError(r: { stdout: string; stderr: string; status: number }, re: RegExp): void {
  assert.equal(r.status, 1, `exit ${r.status}\n${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/\r/.test(l) && !/^\s*(ppl|eval|compare|distill|generate)\b.*(tok|it)\/s/.test(l));
  const errLines = lines.filter((l) => l.startsWith('error:'));
  assert.equal(errLines.length, 1, r.stderr);
  assert.match(errLines[0]!, re);
  assert.doesNotMatch(r.stderr, /\n\s+at .*\.js:\d+/, 'no stack trace');
}

test('firstNonFinite finds the first NaN/±Inf at any position (block edges included) and nothing in finite data', () => {
  const n = 3 * 4096 + 5;
  const a = new Float32Array(n).map((_, i) => Math.sin(i) * 1e30);
  assert.equal(firstNonFinite(a), -1);
  assert.equal(firstNonFinite(new Float32Array(0)), -1);
  for (const at of [0, 3, 4095, 4096, 8191, n - 1]) {
    for (const v of [NaN, Infinity, -Infinity]) {
      const b = a.slice();
      b[at] = v;
      if (at + 7 < n) b[at + 7] = NaN; // a later one must not win
      assert.equal(firstNonFinite(b), at, `${v} at ${at}`);
    }
  }
  // Largest finite values (x·0 = 0) are not flagged.
  assert.equal(firstNonFinite(Float64Array.of(Number.MAX_VALUE, -Number.MAX_VALUE, 3.4028234663852886e38)), -1);
});

test('load: NaN in one wq of stories260K.bin is a one-line error naming the file, tensor and element', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { block, C } = storiesLayout();
    // Layer 2 of wq, row 1, column 36.
    const bad = plantedBin(join(dir, 'nan-wq.bin'), [[block.wq! + 2 * C * C + C + 36, NaN]]);
    assert.throws(() => loadModel(bad), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /nan-wq\.bin: tensor model\.layers\.2\.self_attn\.q_proj\.weight \(llama2\.c wq of layer 2\): NaN at element \[1, 36\]/);
      return true;
    });
    assertOneLineError(mla(['ppl', bad, '--tokenizer', STORIES_TOK, '--text', TASKS]), /nan-wq\.bin: tensor model\.layers\.2\.self_attn\.q_proj\.weight .*NaN/);
  } finally {
    cleanup();
  }
});

test('load: +Inf in a norm weight (llama2.c, HF safetensors F32/BF16, DeepSeek-V3 layout, a --resume checkpoint) names the tensor', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { block, C } = storiesLayout();
    const bad = plantedBin(join(dir, 'inf-norm.bin'), [[block.rms_ffn! + C + 7, Infinity]]);
    assert.throws(() => loadModel(bad), /inf-norm\.bin: tensor model\.layers\.1\.post_attention_layernorm\.weight \(llama2\.c rms_ffn of layer 1\): \+Inf at element \[7\]/);

    const clean = loadModel(STORIES_BIN);
    // HF llama pairs RoPE half-split: a random llama-layout model stands in for an HF checkpoint.
    const llama = randomLlama(3);
    for (const dtype of ['F32', 'BF16'] as const) {
      const hf = join(dir, `hf-${dtype}`);
      const w = llama.weights();
      w.get('model.norm.weight')!.data[5] = Infinity;
      saveHfModel(hf, llama.config, w, dtype);
      assert.throws(() => loadModel(hf), new RegExp(`hf-${dtype}/model\\.safetensors: tensor model\\.norm\\.weight: \\+Inf at element \\[5\\]`));
    }
    // Our DeepSeek-V3 layout: a weight-basis conversion (no calibration) saved with one bad value.
    const converted = convert(Model.fromWeights(clean.config, clean.weights, getBackend('ref')), null, {
      ...convertOpts, basis: 'weight', ropeMethod: 'ecomla', nopeInit: 'identity',
    });
    converted.weights.get('model.layers.3.mlp.down_proj.weight')!.data[172 * 2 + 9] = -Infinity;
    const ds = join(dir, 'ds');
    saveModelDir(ds, converted.config, converted.weights);
    assert.throws(() => loadModel(ds), /ds\/model\.safetensors: tensor model\.layers\.3\.mlp\.down_proj\.weight: -Inf at element \[2, 9\]/);
    // A distillation checkpoint (--resume) with a NaN AdamW moment.
    converted.weights.get('model.layers.3.mlp.down_proj.weight')!.data[172 * 2 + 9] = 0.5;
    const cp = checkpointDir(join(dir, 'run'));
    saveModelDir(cp, converted.config, converted.weights);
    writeSafetensors(join(cp, 'optimizer.safetensors'), [
      { name: 'm.model.norm.weight', shape: [64], data: new Float32Array(64) },
      { name: 'v.model.norm.weight', shape: [64], data: new Float32Array(64).fill(NaN, 60, 61) },
    ], { adam_step: '3' });
    writeFileSync(join(cp, 'state.json'), stateJson({ version: 1, step: 3, tokens: 96, settings: resolveSettings() }));
    assert.throws(() => loadCheckpoint(join(dir, 'run')), /checkpoint\/optimizer\.safetensors: tensor v\.model\.norm\.weight: NaN at element \[60\]/);
  } finally {
    cleanup();
  }
});

test('a forward pass that overflows (finite but huge final-norm weight) stops ppl, generate, eval and compare with one line', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { block, C } = storiesLayout();
    // Every rms_final weight 3e38: finite (the load check passes it), but x̂·w overflows float32 in the forward pass.
    const huge = plantedBin(join(dir, 'huge.bin'), Array.from({ length: C }, (_, c) => [block.rms_final! + c, 3e38] as [number, number]));
    const text = join(dir, 't.txt');
    writeFileSync(text, TEXT);
    const tok = ['--tokenizer', STORIES_TOK];
    assertOneLineError(mla(['ppl', huge, ...tok, '--text', text]), /^error: perplexity: non-finite logits \((NaN|\+Inf|-Inf) at window 1 of 1, position 0, column \d+\); the forward pass overflowed/);
    assertOneLineError(mla(['generate', huge, ...tok, '--prompt', 'Once', '--max-tokens', '4']), /^error: generate: non-finite logits \(.* at generated token 1/);
    assertOneLineError(mla(['eval', huge, ...tok, '--tasks', TASKS, '--limit', '2']), /^error: eval: non-finite logits \(.* at item \d+, choice \d+, position \d+/);
    assertOneLineError(mla(['compare', STORIES_BIN, huge, ...tok, '--text', text]), /^error: compare: non-finite logits from huge \(NaN|\+Inf|-Inf/);
    assertOneLineError(mla(['compare', huge, STORIES_BIN, ...tok, '--text', text]), /^error: compare: non-finite logits from huge \(the teacher\)/);
  } finally {
    cleanup();
  }
});

test('distill stops when the teacher goes non-finite, saying it is the teacher', () => {
  const { dir, cleanup } = tempDir();
  try {
    const { block, C } = storiesLayout();
    const huge = plantedBin(join(dir, 'huge.bin'), Array.from({ length: C }, (_, c) => [block.rms_final! + c, 3e38] as [number, number]));
    const text = join(dir, 't.txt');
    writeFileSync(text, `${TEXT} ${TEXT} ${TEXT}`);
    // A data-free conversion as the student (a llama2.c GQA student has no model-directory form: refused up front).
    const student = join(dir, 'student');
    mlaOk(['convert', STORIES_BIN, '--tokenizer', STORIES_TOK, '--out', student, '--recipe', 'x-ecomla', '--rope-dim', '4']);
    const r = mla([
      'distill', '--teacher', huge, '--tokenizer', STORIES_TOK, '--student', student, '--out', join(dir, 'run'),
      '--data', text, '--eval-text', text, '--steps', '2', '--batch', '1', '--seq', '8', '--backend', 'ref',
    ]);
    assertOneLineError(r, /^error: distill( eval)?: non-finite logits from the teacher \(.*\); the teacher's forward pass overflowed/);
  } finally {
    cleanup();
  }
});

const cpuSkip = availableBackends().includes('cpu') ? false : `cpu backend unavailable: ${loadCpuBackend().available ? '' : 'not built'}`;

test('a NaN in one wq gives NaN logits on cpu exactly where ref has them (no zero-filled attention rows)', { skip: cpuSkip }, () => {
  const loaded = loadModel(STORIES_BIN);
  const w = new Map([...loaded.weights].map(([k, t]) => [k, t.clone()]));
  // Layer 1, query head 3 (rows 24..31), column 5: only that head's scores go NaN, so only some positions' outputs do.
  w.get('model.layers.1.self_attn.q_proj.weight')!.data[25 * 64 + 5] = NaN;
  const ids = Int32Array.from({ length: 2 * 20 }, (_, i) => (i * 37 + 11) % 512);
  const logitsOn = (be: 'cpu' | 'ref') => noGrad(() => forward(Model.fromWeights(loaded.config, w, getBackend(be)), ids, 2, 20).value.data);
  const cpu = logitsOn('cpu');
  const ref = logitsOn('ref');
  let nan = 0;
  for (let i = 0; i < ref.length; i++) {
    assert.equal(Number.isNaN(cpu[i]!), Number.isNaN(ref[i]!), `logit ${i}: cpu ${cpu[i]}, ref ${ref[i]}`);
    if (Number.isNaN(ref[i]!)) nan++;
  }
  assert.ok(nan > 0, 'the planted NaN reaches the logits');
});


test('convert refuses NaN weights and non-finite calibration statistics before svd/eigh, naming layer and tensor', () => {
  const loaded = loadModel(STORIES_BIN, { tokenizer: STORIES_TOK });
  const be = getBackend('ref');
  const model = (edit: (w: Map<string, Tensor>) => void) => {
    const w = new Map([...loaded.weights].map(([k, t]) => [k, t.clone()]));
    edit(w);
    return Model.fromWeights(loaded.config, w, be);
  };
  // A model built in code (no load check) with a NaN key weight.
  const nanK = model((w) => (w.get('model.layers.1.self_attn.k_proj.weight')!.data[70] = NaN));
  assert.throws(
    () => convert(nanK, loaded.tokenizer, { ...convertOpts, basis: 'weight', ropeMethod: 'ecomla', nopeInit: 'identity' }),
    (e: Error) => e instanceof NonFiniteError && /convert: layer 1: tensor model\.layers\.1\.self_attn\.k_proj\.weight is NaN at element \[1, 6\]/.test(e.message),
  );
  // Finite weights whose forward pass overflows in layer 2's attention input: the statistics name layer 2.
  const huge = model((w) => w.get('model.layers.2.input_layernorm.weight')!.data.fill(3e38));
  assert.throws(
    () => convert(huge, loaded.tokenizer, convertOpts),
    (e: Error) => e instanceof NonFiniteError && /^calibration: layer 2: the (mean|second moment).* of the attention input is (NaN|\+Inf|-Inf)/.test(e.message),
  );
});

test('svd/eigh refuse NaN/±Inf input on every linalg provider (LAPACK returns garbage or fails obscurely)', () => {
  const cpu = loadCpuBackend();
  const providers = [tsLinalg, ...(cpu.available ? [cpu.linalg] : [])];
  for (const la of providers) {
    for (const v of [NaN, Infinity, -Infinity]) {
      const a = Float64Array.from({ length: 6 * 4 }, (_, i) => Math.sin(i + 1));
      a[9] = v;
      assert.throws(() => la.svd(a, 6, 4), (e: Error) => e instanceof NonFiniteInputError && /svd: entry 9 \(row 2, column 1\)/.test(e.message), `${la.name} svd ${v}`);
      const s = Float64Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 2 : 0.1));
      s[6] = v;
      assert.throws(() => la.eigh(s, 4), (e: Error) => e instanceof NonFiniteInputError && /eigh: entry 6 \(row 1, column 2\)/.test(e.message), `${la.name} eigh ${v}`);
    }
  }
});

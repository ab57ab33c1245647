// tokenizer.json through @huggingface/tokenizers: a tiny BPE tokenizer written here, BOS rules
// (post-processor template, add_bos_token either way, no BOS at all), decode, and clear load errors.
// Then loadModel, the one entry point (llama2.c file, HF directory with or without tokenizer.json, the
// deepseek_v3 route), which needs that tokenizer (kept in one file: test files run their tests on import).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../src/tensor/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { UserError } from '../src/errors.js';
import { expectedGqaTensors, saveHfModel } from '../src/io/hf.js';
import { loadModel } from '../src/io/load.js';
import { loadHfTokenizer } from '../src/io/tokenizer.js';
import { STORIES_BIN, STORIES_TOK, tempDir } from './helpers.js';

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/** A Llama-2-style (Metaspace + BPE) tokenizer.json over a 22-token vocabulary. */
function tinyTokenizerJson(postProcessor: unknown = 'template'): Record<string, unknown> {
  const vocab: Record<string, number> = {
    '<unk>': 0, '<s>': 1, '</s>': 2, '▁': 3, h: 4, e: 5, l: 6, o: 7, w: 8, r: 9, d: 10,
    he: 11, ll: 12, hell: 13, hello: 14, '▁hello': 15, '▁w': 16, or: 17, '▁wor': 18, '▁world': 19, '!': 20, ld: 21,
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor:
      postProcessor === 'template'
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
            special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
          }
        : postProcessor,
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: false,
      vocab,
      merges: ['h e', 'l l', 'he ll', 'hell o', '▁ hello', '▁ w', 'o r', '▁w or', 'l d', '▁wor ld'],
    },
  };
}

function writeTok(dir: string, tok: unknown, cfg?: unknown): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), typeof tok === 'string' ? tok : JSON.stringify(tok));
  if (cfg !== undefined) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
  return dir;
}

test('tokenizer.json BPE: encode/decode, BOS from the post-processor template, EOS from tokenizer_config', () => {
  const { dir, cleanup } = tempDir();
  try {
    const tok = loadHfTokenizer(writeTok(join(dir, 't'), tinyTokenizerJson(), { bos_token: '<s>', eos_token: '</s>' }));
    assert.equal(tok.vocabSize, 22);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.deepEqual(tok.encode('hello world!', true), [1, 15, 19, 20]);
    assert.deepEqual(tok.encode('hello world!', false), [15, 19, 20]);
    assert.deepEqual(tok.encode('', true), [1]);
    assert.deepEqual(tok.encode('', false), []);
    assert.equal(tok.decode([1, 15, 19, 20]), 'hello world!');
    assert.equal(tok.decode([15, 19, 20, 2]), 'hello world!', 'special tokens are not printed');
    assert.equal(tok.decode([]), '');
    assert.equal(tok.decode(tok.encode('world hello', true)), 'world hello');
    // The tokenizer.json file itself may be given.
    assert.equal(loadHfTokenizer(join(dir, 't', 'tokenizer.json')).bosId, 1);
  } finally {
    cleanup();
  }
});

test('BOS rules: add_bos_token wins over the template; no template and no flag means no BOS', () => {
  const { dir, cleanup } = tempDir();
  try {
    const off = loadHfTokenizer(writeTok(join(dir, 'off'), tinyTokenizerJson(), { add_bos_token: false, bos_token: '<s>' }));
    assert.equal(off.bosId, null);
    assert.deepEqual(off.encode('hello', true), [15]);

    const on = loadHfTokenizer(writeTok(join(dir, 'on'), tinyTokenizerJson(null), { add_bos_token: true, bos_token: { content: '<s>', __type: 'AddedToken' } }));
    assert.equal(on.bosId, 1);
    assert.deepEqual(on.encode('hello', true), [1, 15]);

    // Qwen2-style: a ByteLevel post-processor adds nothing, no add_bos_token.
    const none = loadHfTokenizer(writeTok(join(dir, 'none'), tinyTokenizerJson({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false })));
    assert.equal(none.bosId, null);
    assert.equal(none.eosId, null);
    assert.deepEqual(none.encode('hello', true), [15]);

    // A Sequence post-processor holding the template.
    const seq = loadHfTokenizer(
      writeTok(join(dir, 'seq'), tinyTokenizerJson({ type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }, (tinyTokenizerJson().post_processor as object)] })),
    );
    assert.equal(seq.bosId, 1);
  } finally {
    cleanup();
  }
});

test('bad tokenizer files are refused naming the file', () => {
  const { dir, cleanup } = tempDir();
  try {
    const isUser = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);
    assert.throws(() => loadHfTokenizer(join(dir, 'missing')), isUser(/missing\/tokenizer\.json: file not found/));
    writeTok(join(dir, 'badjson'), '{"model": ');
    assert.throws(() => loadHfTokenizer(join(dir, 'badjson')), isUser(/badjson\/tokenizer\.json: \(whole file\): valid JSON/));
    writeTok(join(dir, 'nomodel'), { added_tokens: [] });
    assert.throws(() => loadHfTokenizer(join(dir, 'nomodel')), isUser(/nomodel\/tokenizer\.json: model: expected an object/));
    const weird = tinyTokenizerJson();
    (weird.model as Record<string, unknown>).type = 'Mystery';
    delete (weird.model as Record<string, unknown>).vocab;
    writeTok(join(dir, 'weird'), weird);
    assert.throws(() => loadHfTokenizer(join(dir, 'weird')), isUser(/weird\/tokenizer\.json: not a tokenizer this tool can read/));
    writeTok(join(dir, 'badbos'), tinyTokenizerJson(null), { add_bos_token: true, bos_token: '<nope>' });
    assert.throws(() => loadHfTokenizer(join(dir, 'badbos')), isUser(/bos_token: token "<nope>" is not in the vocabulary/));
  } finally {
    cleanup();
  }
});

// ---- loadModel ----

const isUser = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);

test('llama2.c checkpoint: no tokenizer unless given, then the tok .bin', () => {
  const bare = loadModel(STORIES_BIN);
  assert.equal(bare.format, 'llama2c');
  assert.equal(bare.source, STORIES_BIN);
  assert.equal(bare.tokenizer, null);
  assert.equal(bare.config.ropePairing, 'adjacent');
  assert.equal(bare.weights.size, 2 + 5 * 9);
  const withTok = loadModel(STORIES_BIN, { tokenizer: STORIES_TOK });
  assert.equal(withTok.tokenizer?.vocabSize, 512);
  assert.equal(withTok.tokenizer?.decode(withTok.tokenizer.encode('Once upon a time', true)), 'Once upon a time');
  assert.throws(() => loadModel(STORIES_BIN, { tokenizer: '/nonexistent/tok.bin' }), isUser(/tok\.bin: tokenizer not found/));
  assert.throws(() => loadModel('/nonexistent/model.bin'), isUser(/no such file or directory/));
});

function tinyConfig(V: number): ModelConfig {
  return {
    arch: 'llama',
    vocabSize: V,
    hiddenSize: 16,
    intermediateSize: 24,
    numLayers: 1,
    numHeads: 2,
    rmsNormEps: 1e-5,
    ropePairing: 'half',
    ropeInvFreq: defaultInvFreq(10000, 8),
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositions: 64,
    tieEmbeddings: true,
    bosTokenId: 1,
    eosTokenId: 2,
    layers: [{ kind: 'gqa', numKvHeads: 1, headDim: 8, qkvBias: false }],
  };
}

test('HF directory: tokenizer.json beside the weights is loaded; deepseek_v3 goes to its loader', () => {
  const { dir: root, cleanup } = tempDir();
  try {
    const cfg = tinyConfig(32);
    const rng = mulberry32(3);
    const w = new Map(expectedGqaTensors(cfg).map((s) => [s.name, Tensor.rand(s.shape, rng)]));
    const withTok = join(root, 'with');
    saveHfModel(withTok, cfg, w, 'F32', { extraFiles: { 'tokenizer.json': JSON.stringify(tinyTokenizerJson()) } });
    const m = loadModel(withTok);
    assert.equal(m.format, 'hf');
    assert.equal(m.source, withTok);
    assert.deepEqual(m.tokenizer?.encode('hello world!', true), [1, 15, 19, 20]);

    const noTok = join(root, 'without');
    saveHfModel(noTok, cfg, w);
    assert.equal(loadModel(noTok).tokenizer, null);
    assert.equal(loadModel(noTok, { tokenizer: withTok }).tokenizer?.bosId, 1, 'an explicit tokenizer directory');

    // A tokenizer larger than the model's vocabulary cannot be used with it.
    const small = join(root, 'small');
    saveHfModel(small, tinyConfig(8), new Map(expectedGqaTensors(tinyConfig(8)).map((s) => [s.name, Tensor.rand(s.shape, rng)])));
    assert.throws(() => loadModel(small, { tokenizer: withTok }), isUser(/the tokenizer has 22 tokens but the model's vocabulary is 8/));

    // model_type deepseek_v3 is routed to deepseek.ts (the llama-family reader would refuse the model_type itself).
    writeFileSync(join(noTok, 'config.json'), JSON.stringify({ model_type: 'deepseek_v3' }));
    assert.throws(() => loadModel(noTok), (e: unknown) => e instanceof UserError && !/model_type/.test(e.message));
    assert.throws(() => loadModel(join(withTok, 'model.safetensors')), isUser(/give the checkpoint directory/));
  } finally {
    cleanup();
  }
});

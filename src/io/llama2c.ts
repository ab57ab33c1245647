// llama2.c checkpoints (the "legacy" version-0 export run.c reads): 7 int32 header fields, then f32 weights.
// Mapped to HF names without permuting anything: the config records ropePairing 'adjacent' instead.
// Legend: V vocab, C dim, I hidden_dim, L layers, H heads, Hkv kv heads, D = C/H head size, T seq_len.

import { Tensor } from '../tensor/tensor.js';
import { defaultInvFreq, type ModelConfig } from '../model/config.js';
import { formatError } from '../errors.js';
import { assertLittleEndianHost, withFile } from './binfile.js';
import { assertFiniteWeights } from './finite.js';
import type { LoadedModel } from './hf.js';

export { loadLlama2cTokenizer, Llama2cTokenizer } from './llama2c-tokenizer.js';

const HEADER_FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
const HEADER_BYTES = 4 * HEADER_FIELDS.length;
/** "ak42": the magic of llama2.c's later export versions (run.c reads only the legacy layout). */
const MAGIC_AK42 = 0x616b3432;

/** The run.c weight block an HF-style tensor name was cut from (for messages), with its layer. */
function blockOf(name: string): string {
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  const perLayer: Record<string, string> = {
    input_layernorm: 'rms_att', 'self_attn.q_proj': 'wq', 'self_attn.k_proj': 'wk', 'self_attn.v_proj': 'wv',
    'self_attn.o_proj': 'wo', post_attention_layernorm: 'rms_ffn', 'mlp.gate_proj': 'w1', 'mlp.down_proj': 'w2',
    'mlp.up_proj': 'w3',
  };
  if (m) return `${perLayer[m[2]!] ?? m[2]!} of layer ${m[1]!}`;
  return name === 'model.embed_tokens.weight' ? 'token_embedding' : name === 'model.norm.weight' ? 'rms_final' : 'wcls';
}

/**
 * Load a llama2.c checkpoint. File layout after the header (all f32, row-major, W is [out][in]):
 * token_embedding (V, C); rms_att (L, C); wq (L, H·D, C); wk (L, Hkv·D, C); wv (L, Hkv·D, C); wo (L, C, H·D);
 * rms_ffn (L, C); w1 (L, I, C); w2 (L, C, I); w3 (L, I, C); rms_final (C); freq_cis_real (T, D/2);
 * freq_cis_imag (T, D/2); then the classifier (V, C) only when the header's vocab_size is negative.
 */
export function loadLlama2c(file: string): LoadedModel {
  assertLittleEndianHost();
  return withFile(file, (f) => {
    if (f.size < HEADER_BYTES) throw formatError(file, 'header', `expected ${HEADER_BYTES} bytes (7 int32), the file has ${f.size}`);
    const hv = new Int32Array(f.read(0, HEADER_BYTES).buffer);
    if (hv[0] === MAGIC_AK42) {
      throw formatError(file, 'header', 'this is a versioned llama2.c export (magic "ak42"); only the legacy (version 0) layout run.c reads is supported');
    }
    const h: Record<(typeof HEADER_FIELDS)[number], number> = { dim: 0, hidden_dim: 0, n_layers: 0, n_heads: 0, n_kv_heads: 0, vocab_size: 0, seq_len: 0 };
    HEADER_FIELDS.forEach((k, i) => {
      h[k] = hv[i]!;
      if (k === 'vocab_size' ? h[k] === 0 : h[k] <= 0) {
        throw formatError(file, k, `expected a ${k === 'vocab_size' ? 'non-zero' : 'positive'} integer, got ${h[k]}`);
      }
    });
    const shared = h.vocab_size > 0;
    const V = Math.abs(h.vocab_size);
    const { dim: C, hidden_dim: I, n_layers: L, n_heads: H, n_kv_heads: Hkv, seq_len: T } = h;
    if (C % H !== 0) throw formatError(file, 'n_heads', `${H} does not divide dim ${C}`);
    if (H % Hkv !== 0) throw formatError(file, 'n_kv_heads', `${Hkv} does not divide n_heads ${H}`);
    const D = C / H;
    if (D % 2 !== 0) throw formatError(file, 'n_heads', `head size dim/n_heads = ${D} must be even for RoPE`);

    const parts: [string, number][] = [
      ['token_embedding', V * C],
      ['rms_att', L * C],
      ['wq', L * C * H * D],
      ['wk', L * C * Hkv * D],
      ['wv', L * C * Hkv * D],
      ['wo', L * H * D * C],
      ['rms_ffn', L * C],
      ['w1', L * I * C],
      ['w2', L * C * I],
      ['w3', L * I * C],
      ['rms_final', C],
      ['freq_cis', T * D],
    ];
    if (!shared) parts.push(['wcls', V * C]);
    const floats = parts.reduce((a, [, n]) => a + n, 0);
    const want = HEADER_BYTES + 4 * floats;
    if (f.size !== want) {
      throw formatError(
        file,
        'file size',
        `the header (dim ${C}, hidden_dim ${I}, n_layers ${L}, n_heads ${H}, n_kv_heads ${Hkv}, vocab_size ${h.vocab_size}, seq_len ${T}) ` +
          `needs ${want} bytes, the file has ${f.size}`,
      );
    }

    let pos = HEADER_BYTES;
    const block = new Map<string, Float32Array>();
    for (const [name, n] of parts) {
      if (name !== 'freq_cis') block.set(name, new Float32Array(f.read(pos, 4 * n).buffer));
      pos += 4 * n;
    }
    const part = (name: string): Float32Array => block.get(name)!;
    const w = new Map<string, Tensor>();
    /** Layer l's slice of a stacked (L, ...shape) block, copied so every tensor owns its buffer. */
    const layer = (name: string, l: number, shape: number[]): Tensor => {
      const n = shape.reduce((a, b) => a * b, 1);
      return new Tensor(shape, part(name).slice(l * n, (l + 1) * n));
    };
    w.set('model.embed_tokens.weight', new Tensor([V, C], part('token_embedding')));
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      w.set(`${p}.input_layernorm.weight`, layer('rms_att', l, [C]));
      w.set(`${p}.self_attn.q_proj.weight`, layer('wq', l, [H * D, C]));
      w.set(`${p}.self_attn.k_proj.weight`, layer('wk', l, [Hkv * D, C]));
      w.set(`${p}.self_attn.v_proj.weight`, layer('wv', l, [Hkv * D, C]));
      w.set(`${p}.self_attn.o_proj.weight`, layer('wo', l, [C, H * D]));
      w.set(`${p}.post_attention_layernorm.weight`, layer('rms_ffn', l, [C]));
      w.set(`${p}.mlp.gate_proj.weight`, layer('w1', l, [I, C]));
      w.set(`${p}.mlp.down_proj.weight`, layer('w2', l, [C, I]));
      w.set(`${p}.mlp.up_proj.weight`, layer('w3', l, [I, C]));
    }
    w.set('model.norm.weight', new Tensor([C], part('rms_final')));
    if (!shared) w.set('lm_head.weight', new Tensor([V, C], part('wcls')));
    // Every weight must be finite; the message names run.c's block as well (blockOf).
    for (const [name, t] of w) assertFiniteWeights(file, `${name} (llama2.c ${blockOf(name)})`, t.shape, t.data);

    const theta = 10000;
    const config: ModelConfig = {
      arch: 'llama',
      vocabSize: V,
      hiddenSize: C,
      intermediateSize: I,
      numLayers: L,
      numHeads: H,
      rmsNormEps: 1e-5,
      ropePairing: 'adjacent',
      // run.c: pair (i, i+1) of a head rotates by pos · θ^(−(i mod D)/D), i even: the default frequencies.
      ropeInvFreq: defaultInvFreq(theta, D),
      ropeTheta: theta,
      ropeScaling: null,
      maxPositions: T,
      tieEmbeddings: shared,
      bosTokenId: 1,
      eosTokenId: 2,
      layers: Array.from({ length: L }, () => ({ kind: 'gqa' as const, numKvHeads: Hkv, headDim: D, qkvBias: false })),
    };
    return { config, weights: w };
  });
}

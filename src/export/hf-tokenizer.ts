// Tokenizer files for the stock HF export, so that transformers' AutoTokenizer reads every export:
//   - a llama2.c tokenizer.bin (which transformers cannot read) becomes a SentencePiece-style BPE tokenizer.json, as
//     transformers' own LlamaConverter writes one for Llama-2: vocab with '▁' for space, byte fallback (<0xNN>),
//     merges for every split a+b of a piece ranked by the piece's score (highest first, which is llama2.c's
//     merge order: it repeatedly merges the adjacent pair whose concatenation scores highest), normalizer
//     Prepend('▁') + Replace(' ', '▁') (SentencePiece's dummy prefix), a post-processor adding <s>;
//   - tokenizer_config.json: copied when the source has one, else written (PreTrainedTokenizerFast, special tokens,
//     add_bos_token, model_max_length).

import { readFileSync } from 'node:fs';
import { isObject, readJsonObject } from '../io/json.js';
import type { GgufVocab } from './gguf-vocab.js';

export interface TextFile {
  name: string;
  text: string;
}

/** tokenizer.json (HF tokenizers format) for a SentencePiece-style vocabulary (llama2cVocab's 'llama' model). */
export function spmTokenizerJson(v: GgufVocab): Record<string, unknown> {
  if (v.model !== 'llama' || !v.scores) throw new Error('spmTokenizerJson: a SentencePiece-style vocabulary with scores is required');
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, id) => {
    if (!(t in vocab)) vocab[t] = id;
  });
  const special = v.tokens.map((_, id) => id === v.unk || id === v.bos || id === v.eos);
  // Merges: every split of every normal piece into two pieces of the vocabulary, grouped by piece in id order, the
  // splits of one piece ordered by (left id, right id), then a stable sort by the piece's score, highest first.
  const merges: { pair: string; score: number }[] = [];
  v.tokens.forEach((t, id) => {
    if (special[id] || v.types[id] !== 1) return;
    const chars = Array.from(t);
    const local: { l: number; r: number; pair: string }[] = [];
    for (let k = 1; k < chars.length; k++) {
      const a = chars.slice(0, k).join('');
      const b = chars.slice(k).join('');
      if (a in vocab && b in vocab) local.push({ l: vocab[a]!, r: vocab[b]!, pair: `${a} ${b}` });
    }
    local.sort((x, y) => x.l - y.l || x.r - y.r);
    for (const m of local) merges.push({ pair: m.pair, score: v.scores![id]! });
  });
  merges.sort((a, b) => b.score - a.score);
  const tok = (id: number | null): string | null => (id === null ? null : v.tokens[id]!);
  const bos = tok(v.bos);
  const added = v.tokens.flatMap((t, id) => (special[id] ? [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }] : []));
  const bosSeq = v.addBos && bos !== null ? [{ SpecialToken: { id: bos, type_id: 0 } }] : [];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [...bosSeq, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [...bosSeq, { Sequence: { id: 'A', type_id: 0 } }, ...bosSeq.map((b) => ({ SpecialToken: { ...b.SpecialToken, type_id: 1 } })), { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: bos !== null && v.addBos ? { [bos]: { id: bos, ids: [v.bos], tokens: [bos] } } : {},
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: tok(v.unk), continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
      ignore_merges: false, vocab, merges: merges.map((m) => m.pair),
    },
  };
}

/** A minimal tokenizer_config.json that AutoTokenizer accepts with a tokenizer.json beside it. */
export function tokenizerConfigJson(bos: string | null, eos: string | null, unk: string | null, addBos: boolean, maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos, eos_token: eos, unk_token: unk, add_bos_token: addBos, add_eos_token: false,
    clean_up_tokenization_spaces: false, model_max_length: maxLength,
  };
}

/** Special-token strings of a tokenizer.json by id (added_tokens first, then the model vocab). */
function tokenById(file: string, id: number | null): string | null {
  if (id === null) return null;
  const j = readJsonObject(file);
  if (Array.isArray(j.added_tokens)) {
    for (const t of j.added_tokens) if (isObject(t) && t.id === id && typeof t.content === 'string') return t.content;
  }
  const m = j.model;
  if (isObject(m) && isObject(m.vocab)) for (const [k, v] of Object.entries(m.vocab)) if (v === id) return k;
  return null;
}

/**
 * The tokenizer files of an HF export: from a llama2.c vocabulary (tokenizer.json + tokenizer_config.json written),
 * or a tokenizer.json source (copied, with tokenizer_config.json copied when present and written when not).
 */
export function hfTokenizerFiles(
  src: { llama2c: GgufVocab } | { tokenizerJson: string; tokenizerConfig: string | null; bosId: number | null; eosId: number | null },
  maxLength: number,
): TextFile[] {
  if ('llama2c' in src) {
    const v = src.llama2c;
    const t = (id: number | null) => (id === null ? null : v.tokens[id]!);
    return [
      { name: 'tokenizer.json', text: JSON.stringify(spmTokenizerJson(v)) },
      { name: 'tokenizer_config.json', text: JSON.stringify(tokenizerConfigJson(t(v.bos), t(v.eos), t(v.unk), v.addBos, maxLength), null, 2) + '\n' },
    ];
  }
  const files: TextFile[] = [{ name: 'tokenizer.json', text: readFileSync(src.tokenizerJson, 'utf8') }];
  if (src.tokenizerConfig) files.push({ name: 'tokenizer_config.json', text: readFileSync(src.tokenizerConfig, 'utf8') });
  else {
    const cfg = tokenizerConfigJson(tokenById(src.tokenizerJson, src.bosId), tokenById(src.tokenizerJson, src.eosId), null, src.bosId !== null, maxLength);
    files.push({ name: 'tokenizer_config.json', text: JSON.stringify(cfg, null, 2) + '\n' });
  }
  return files;
}

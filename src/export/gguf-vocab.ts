// Tokenizer metadata for GGUF (tokenizer.ggml.*), from a llama2.c tokenizer.bin or an HF tokenizer.json.
// llama.cpp conventions: model "llama" (SentencePiece: tokens with '▁' for space, scores used as merge
// priorities) or "gpt2" (byte-level BPE: tokens + merges, and a pre-tokenizer name); token types 1 normal,
// 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte (<0xNN>).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kv, type GgufValue } from '../io/gguf.js';
import type { Llama2cTokenizer } from '../io/llama2c-tokenizer.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { UserError } from '../errors.js';
import { isObject, jsonPreview, readJsonObject } from '../io/json.js';

export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface GgufVocab {
  model: 'llama' | 'gpt2';
  /** llama.cpp's pre-tokenizer name (gpt2 model only). */
  pre?: string;
  tokens: string[];
  scores?: number[];
  types: number[];
  merges?: string[];
  bos: number | null;
  eos: number | null;
  unk: number | null;
  addBos: boolean;
  /** Facts worth telling the user (padding, guessed pre-tokenizer). */
  notes: string[];
}

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** A llama2.c tokenizer: pieces use ' ' where SentencePiece had '▁'; ids 0/1/2 are <unk>, <s>, </s>. */
export function llama2cVocab(tok: Llama2cTokenizer): GgufVocab {
  const dec = new TextDecoder('utf-8', { fatal: true });
  const tokens = tok.pieces.map((p, id) => {
    if (id === 0) return '<unk>';
    if (id === tok.bosId) return '<s>';
    if (id === tok.eosId) return '</s>';
    let s: string;
    try {
      s = dec.decode(p);
    } catch {
      throw new UserError(`llama2.c tokenizer: token ${id} is not valid UTF-8, which GGUF token strings must be`);
    }
    return s.replaceAll(' ', '\u2581');
  });
  const types = tokens.map((t, id) =>
    id === 0 ? TOKEN_TYPE.unknown : id === tok.bosId || id === tok.eosId ? TOKEN_TYPE.control : BYTE_PIECE.test(t) ? TOKEN_TYPE.byte : TOKEN_TYPE.normal,
  );
  return { model: 'llama', tokens, scores: Array.from(tok.scores), types, bos: tok.bosId, eos: tok.eosId, unk: 0, addBos: true, notes: [] };
}

/** llama.cpp's name for a byte-level BPE pre-tokenizer, from the split regex (known families only). */
function preTokenizerName(pre: unknown): { name: string; known: boolean } {
  const regexes: string[] = [];
  let byteLevelRegex = false;
  const walk = (p: unknown): void => {
    if (!isObject(p)) return;
    if (p.type === 'Sequence' && Array.isArray(p.pretokenizers)) p.pretokenizers.forEach(walk);
    if (p.type === 'Split' && isObject(p.pattern) && typeof p.pattern.Regex === 'string') regexes.push(p.pattern.Regex);
    if (p.type === 'ByteLevel' && p.use_regex !== false) byteLevelRegex = true;
  };
  walk(pre);
  const re = regexes.join('|');
  const contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+";
  if (re.startsWith(contractions + '|\\p{N}{1,3}')) return { name: 'llama-bpe', known: true }; // Llama-3
  if (re.startsWith(contractions + '|\\p{N}|')) return { name: 'qwen2', known: true };
  if (regexes.length === 0 && byteLevelRegex) return { name: 'gpt-2', known: true };
  return { name: 'default', known: false };
}

/** An HF tokenizer.json (+ tokenizer_config.json beside it): byte-level BPE → gpt2, SentencePiece-style → llama. */
export function hfVocab(file: string, tok: Tokenizer): GgufVocab {
  if (!existsSync(file)) throw new UserError(`${file}: tokenizer.json not found`);
  const j = readJsonObject(file);
  const model = j.model;
  if (!isObject(model)) throw new UserError(`${file}: model: expected an object`);
  const type = model.type;
  const vocab = new Map<number, string>();
  const scoreOf = new Map<number, number>();
  if (type === 'BPE') {
    if (!isObject(model.vocab)) throw new UserError(`${file}: model.vocab: expected an object {token: id}`);
    for (const [t, id] of Object.entries(model.vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new UserError(`${file}: model.vocab["${t}"]: expected a non-negative integer id`);
      vocab.set(id, t);
    }
  } else if (type === 'Unigram') {
    if (!Array.isArray(model.vocab)) throw new UserError(`${file}: model.vocab: expected an array of [piece, score]`);
    model.vocab.forEach((e: unknown, id) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') throw new UserError(`${file}: model.vocab[${id}]: expected [piece, score]`);
      vocab.set(id, e[0]);
      scoreOf.set(id, e[1]);
    });
  } else {
    throw new UserError(`${file}: model.type: GGUF export handles BPE and Unigram tokenizers, got ${jsonPreview(type)}`);
  }
  const added = new Map<number, { content: string; special: boolean }>();
  for (const a of Array.isArray(j.added_tokens) ? j.added_tokens : []) {
    if (isObject(a) && typeof a.id === 'number' && typeof a.content === 'string') {
      added.set(a.id, { content: a.content, special: a.special === true });
      vocab.set(a.id, a.content);
    }
  }
  const n = Math.max(-1, ...vocab.keys()) + 1;
  const tokens: string[] = [];
  const types: number[] = [];
  const notes: string[] = [];
  const holes: number[] = [];
  for (let id = 0; id < n; id++) {
    const t = vocab.get(id);
    if (t === undefined) holes.push(id);
    tokens.push(t ?? `[PAD${id}]`);
    const a = added.get(id);
    types.push(t === undefined ? TOKEN_TYPE.unused : a ? (a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined) : TOKEN_TYPE.normal);
  }
  if (holes.length > 0) notes.push(`tokenizer: ${holes.length} unused ids filled with [PADn]`);
  const unkTok = typeof model.unk_token === 'string' ? model.unk_token : null;
  const unk = unkTok === null ? null : tokens.indexOf(unkTok);
  const byteLevel = JSON.stringify(j.pre_tokenizer ?? null).includes('"ByteLevel"') || JSON.stringify(j.decoder ?? null).includes('"ByteLevel"');
  const merges = type === 'BPE' && Array.isArray(model.merges)
    ? model.merges.map((m: unknown, i) => {
        if (typeof m === 'string') return m;
        if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return `${m[0]} ${m[1]}`;
        throw new UserError(`${file}: model.merges[${i}]: expected "a b" or ["a", "b"]`);
      })
    : [];
  const base = { bos: tok.bosId, eos: tok.eosId, unk: unk !== null && unk >= 0 ? unk : null, addBos: tok.bosId !== null, notes };
  if (type === 'BPE' && byteLevel) {
    const pre = preTokenizerName(j.pre_tokenizer);
    if (!pre.known) notes.push("tokenizer: pre-tokenizer not recognised; llama.cpp will use its 'default' splitting (text encoding inside llama.cpp may differ, token ids fed directly are unaffected)");
    return { model: 'gpt2', pre: pre.name, tokens, types, merges, ...base };
  }
  // SentencePiece-style: llama.cpp's SPM tokenizer merges the pair whose merged piece has the highest score.
  // BPE tokenizer.json has no scores: a merged piece scores −(its merge rank), as in the SentencePiece model.
  const scores = tokens.map((_, id) => scoreOf.get(id) ?? 0);
  if (type === 'BPE') {
    const idOf = new Map(tokens.map((t, id) => [t, id] as const));
    merges.forEach((m, rank) => {
      const id = idOf.get(m.replace(' ', ''));
      if (id !== undefined && scores[id] === 0) scores[id] = -(rank + 1);
    });
  }
  tokens.forEach((t, id) => {
    if (types[id] === TOKEN_TYPE.normal && BYTE_PIECE.test(t)) types[id] = TOKEN_TYPE.byte;
  });
  if (base.unk !== null) types[base.unk] = TOKEN_TYPE.unknown;
  return { model: 'llama', tokens, scores, types, ...base };
}

/** The tokenizer.json for a model: an explicit path (file or directory) or MODEL/tokenizer.json. */
export function findTokenizerJson(modelPath: string, tokenizer: string | undefined): string | null {
  const cands = tokenizer ? [tokenizer.endsWith('.json') ? tokenizer : join(tokenizer, 'tokenizer.json')] : [join(modelPath, 'tokenizer.json')];
  return cands.find((c) => existsSync(c)) ?? null;
}

/** Pad the vocabulary to the model's embedding rows (llama.cpp requires tokens = rows). */
export function padVocab(v: GgufVocab, vocabSize: number): GgufVocab {
  if (v.tokens.length > vocabSize) throw new UserError(`tokenizer: ${v.tokens.length} tokens, but the model has only ${vocabSize} embedding rows`);
  if (v.tokens.length === vocabSize) return v;
  const extra = vocabSize - v.tokens.length;
  const ids = Array.from({ length: extra }, (_, i) => v.tokens.length + i);
  return {
    ...v,
    tokens: [...v.tokens, ...ids.map((id) => `[PAD${id}]`)],
    types: [...v.types, ...ids.map(() => TOKEN_TYPE.unused)],
    scores: v.scores ? [...v.scores, ...ids.map(() => 0)] : undefined,
    notes: [...v.notes, `tokenizer: ${extra} embedding rows beyond the vocabulary written as [PADn] tokens`],
  };
}

/** tokenizer.ggml.* metadata. */
export function vocabKvs(v: GgufVocab): [string, GgufValue][] {
  const out: [string, GgufValue][] = [['tokenizer.ggml.model', kv.str(v.model)]];
  if (v.pre !== undefined) out.push(['tokenizer.ggml.pre', kv.str(v.pre)]);
  out.push(['tokenizer.ggml.tokens', kv.strs(v.tokens)]);
  if (v.scores) out.push(['tokenizer.ggml.scores', kv.f32s(v.scores)]);
  out.push(['tokenizer.ggml.token_type', kv.i32s(v.types)]);
  if (v.merges) out.push(['tokenizer.ggml.merges', kv.strs(v.merges)]);
  if (v.bos !== null) out.push(['tokenizer.ggml.bos_token_id', kv.u32(v.bos)]);
  if (v.eos !== null) out.push(['tokenizer.ggml.eos_token_id', kv.u32(v.eos)]);
  if (v.unk !== null) out.push(['tokenizer.ggml.unknown_token_id', kv.u32(v.unk)]);
  out.push(['tokenizer.ggml.add_bos_token', kv.bool(v.addBos)], ['tokenizer.ggml.add_eos_token', kv.bool(false)]);
  return out;
}

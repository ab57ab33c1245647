// The Tokenizer interface every model's tokenizer implements, and the HF tokenizer.json one
// (through @huggingface/tokenizers). The llama2.c tokenizer lives in llama2c-tokenizer.ts.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizerLib } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { isObject, readJsonObject, type JsonObject } from './json.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer we use. Its bundled .d.ts uses extensionless relative
 * imports that NodeNext resolution cannot follow (the import types as any), so the surface is stated here.
 */
interface HfTokenizerImpl {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}

export interface Tokenizer {
  /** One more than the largest id the tokenizer can produce or decode. */
  readonly vocabSize: number;
  /** The id prepended by encode(text, true); null when this tokenizer's model uses no BOS. */
  readonly bosId: number | null;
  /** End-of-sequence id, or null when unknown. */
  readonly eosId: number | null;
  /** Text → ids; addBos prepends bosId (when there is one). Never adds EOS. */
  encode(text: string, addBos: boolean): number[];
  /**
   * Ids → text as the model's own reference prints it: tokenizer.json skips special tokens; llama2.c follows
   * run.c (a leading BOS is the prompt start, a later BOS ends the text, EOS prints its piece).
   */
  decode(ids: number[]): string;
}

/** A special token in tokenizer_config.json: a string, or an AddedToken object with `content`. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** The special token a TemplateProcessing post-processor puts before the sequence, if any. */
function templateBos(post: unknown): string | null {
  if (!isObject(post)) return null;
  if (post.type === 'Sequence' && Array.isArray(post.processors)) {
    for (const p of post.processors) {
      const b = templateBos(p);
      if (b !== null) return b;
    }
    return null;
  }
  if (post.type !== 'TemplateProcessing' || !Array.isArray(post.single)) return null;
  const first: unknown = post.single[0];
  if (isObject(first) && isObject(first.SpecialToken) && typeof first.SpecialToken.id === 'string') {
    const special = isObject(post.special_tokens) ? post.special_tokens[first.SpecialToken.id] : undefined;
    if (isObject(special) && Array.isArray(special.tokens) && typeof special.tokens[0] === 'string') return special.tokens[0];
    return first.SpecialToken.id;
  }
  return null;
}

/** A tokenizer.json tokenizer: encodes without the library's special tokens and adds BOS itself. */
class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;

  constructor(
    private readonly impl: HfTokenizerImpl,
    tokJson: JsonObject,
    tokConfig: JsonObject,
    file: string,
  ) {
    let maxId = -1;
    for (const id of impl.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const idOf = (tok: string | null, field: string): number | null => {
      if (tok === null) return null;
      const id = impl.token_to_id(tok);
      if (id === undefined) throw new UserError(`${file}: ${field}: token "${tok}" is not in the vocabulary`);
      return id;
    };
    // BOS: tokenizer_config's add_bos_token decides when present; otherwise what the post-processor prepends.
    const addBos = tokConfig.add_bos_token;
    if (addBos === true) this.bosId = idOf(tokenString(tokConfig.bos_token) ?? templateBos(tokJson.post_processor), 'bos_token');
    else if (addBos === false) this.bosId = null;
    else this.bosId = idOf(templateBos(tokJson.post_processor), 'post_processor');
    this.eosId = idOf(tokenString(tokConfig.eos_token), 'eos_token');
  }

  encode(text: string, addBos: boolean): number[] {
    const ids = text === '' ? [] : this.impl.encode(text, { add_special_tokens: false }).ids;
    return addBos && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  decode(ids: number[]): string {
    if (ids.length === 0) return '';
    return this.impl.decode(ids, { skip_special_tokens: true });
  }
}

/**
 * Load `dir/tokenizer.json` (+ `dir/tokenizer_config.json` when present). `dir` may also be the
 * tokenizer.json file itself. The BOS rule follows add_bos_token, else the post-processor's template.
 */
export function loadHfTokenizer(dir: string): Tokenizer {
  const isFile = existsSync(dir) && statSync(dir).isFile();
  const file = isFile ? dir : join(dir, 'tokenizer.json');
  const cfgFile = join(isFile ? join(dir, '..') : dir, 'tokenizer_config.json');
  const tokJson = readJsonObject(file);
  const tokConfig = existsSync(cfgFile) ? readJsonObject(cfgFile) : {};
  if (!isObject(tokJson.model)) throw new UserError(`${file}: model: expected an object`);
  if (!Array.isArray(tokJson.added_tokens)) tokJson.added_tokens = [];
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    if (tokJson[k] === undefined) tokJson[k] = null;
  }
  let impl: HfTokenizerImpl;
  try {
    impl = new HfTokenizerLib(tokJson, tokConfig) as HfTokenizerImpl;
  } catch (e) {
    throw new UserError(`${file}: not a tokenizer this tool can read (${(e as Error).message})`);
  }
  return new HfTokenizer(impl, tokJson, tokConfig, file);
}

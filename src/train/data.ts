// Training data for distillation: a token stream from text / JSONL files, or samples drawn from the teacher.
// Batches are windows picked by a generator seeded with (seed, step), so a resumed run sees the same batches.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { readUtf8File } from '../io/text.js';
import { join } from 'node:path';
import { mulberry32 } from '../tensor/rng.js';
export { PLAIN_SAMPLING, sampleSequences, type SamplingRule } from '../model/generate.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError, UserError } from '../errors.js';

/** Texts from a .txt file (one text), a .jsonl file ({"text": …} per line), or a directory of those; `field` names the
 *  option that gave the path (for the error: the training data, or the held-out evaluation text). */
export function readTexts(path: string, field = 'data'): string[] {
  if (!existsSync(path)) throw new OptionError(field, path, 'no such file or directory');
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path).filter((f) => /\.(txt|jsonl)$/.test(f)).sort();
    if (files.length === 0) throw new OptionError(field, path, 'the directory holds no .txt or .jsonl files');
    return files.flatMap((f) => readTexts(join(path, f), field));
  }
  const raw = readUtf8File(path, `{${field}} ${path}`);
  if (!path.endsWith('.jsonl')) return [raw];
  return raw.split('\n').flatMap((line, i) => {
    if (line.trim() === '') return [];
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new UserError(`${path}: line ${i + 1}: not valid JSON`);
    }
    const t = (o as { text?: unknown }).text;
    if (typeof t !== 'string') throw new UserError(`${path}: line ${i + 1}: field "text": expected a string`);
    return [t];
  });
}

/** Token sequences of at most `len` tokens from texts (each text starts with BOS and is cut into windows). */
export function tokenizeTexts(texts: string[], tok: Tokenizer, len: number): number[][] {
  const out: number[][] = [];
  for (const t of texts) {
    const ids = tok.encode(t, true);
    for (let s = 0; s + 2 <= ids.length; s += len) out.push(ids.slice(s, s + len));
  }
  return out;
}

/** Training batches: each row is a random full-length window of a random sequence. */
export class Batcher {
  readonly seqs: number[][];
  constructor(
    seqs: number[][],
    readonly seq: number,
    readonly batch: number,
    readonly seed: number,
  ) {
    this.seqs = seqs.filter((s) => s.length >= 2);
    if (this.seqs.length === 0) throw new UserError('training data: no sequence of at least 2 tokens');
  }

  /** Rows (batch × T) for `step`; T = min(seq, shortest chosen sequence); targets are the next tokens. */
  get(step: number, micro = 0): { ids: Int32Array; targets: Int32Array; B: number; T: number } {
    const rng = mulberry32((this.seed * 1000003 + step * 131 + micro) >>> 0);
    const picks = Array.from({ length: this.batch }, () => this.seqs[Math.floor(rng() * this.seqs.length)]!);
    // A loop, not Math.min(...picks): a spread of a million rows overflows the call stack.
    let T = this.seq + 1;
    for (const s of picks) T = Math.min(T, s.length);
    T -= 1;
    const B = this.batch;
    const ids = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    picks.forEach((s, b) => {
      const off = Math.floor(rng() * (s.length - T));
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = s[off + t]!;
        targets[b * T + t] = s[off + t + 1]!;
      }
    });
    return { ids, targets, B, T };
  }
}

// The llama2.c tokenizer (tokenizer.bin / tok512.bin): int32 max_token_length, then per id
// float32 score, int32 length, that many bytes. encode() and decode() reproduce run.c's encode() and its
// generation printing (decode(prev, token) + safe_printf) byte for byte; pieces are handled as raw bytes.

import { formatError } from '../errors.js';
import { assertLittleEndianHost, withFile } from './binfile.js';
import type { Tokenizer } from './tokenizer.js';

const BOS = 1;
const EOS = 2;
/** Ids 3..258 are the byte-fallback pieces <0x00>..<0xFF>. */
const BYTE_OFFSET = 3;
/** run.c's merge loop starts from best_score = -1e10 and needs a strictly greater score. */
const MIN_SCORE = -1e10;

/** A piece's bytes as a binary (latin1) string: one char per byte, so concatenation = byte concatenation. */
const bin = (b: Uint8Array): string => String.fromCharCode(...b);

/** C isprint || isspace in the "C" locale. */
const printable = (b: number): boolean => (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);

/** A merge candidate: tokens at list nodes `left` and `right` (valid while their versions match) → `id`. */
interface Candidate {
  score: number;
  left: number;
  leftVer: number;
  right: number;
  rightVer: number;
  id: number;
}

/** Max-heap by score; equal scores pop leftmost first (run.c scans left to right and needs a strictly better score). */
class CandidateHeap {
  private readonly a: Candidate[] = [];
  get size(): number {
    return this.a.length;
  }
  private before(x: Candidate, y: Candidate): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(c: Candidate): void {
    const a = this.a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Candidate {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

export class Llama2cTokenizer implements Tokenizer {
  readonly bosId = BOS;
  readonly eosId = EOS;
  private readonly lookup = new Map<string, number>();
  private readonly keys: string[];

  constructor(
    readonly pieces: Uint8Array[],
    readonly scores: Float32Array,
    readonly maxTokenLength: number,
  ) {
    this.keys = pieces.map(bin);
    // run.c bsearches a sorted copy; with duplicate pieces any match may win: we keep the lowest id.
    this.keys.forEach((k, id) => {
      if (!this.lookup.has(k)) this.lookup.set(k, id);
    });
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** run.c encode(text, bos, eos=0): dummy prefix, per-UTF-8-character lookup with byte fallback, then greedy merges. */
  encode(text: string, addBos: boolean): number[] {
    const tokens = addBos ? [BOS] : [];
    const bytes = new TextEncoder().encode(text);
    if (bytes.length > 0) tokens.push(this.lookup.get(' ') ?? BYTE_OFFSET + 0x20);
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i]! & 0xc0) !== 0x80) start = i;
      const len = i - start + 1;
      // run.c keeps appending continuation bytes, at most 4 in a buffer
      if (i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80 && len < 4) continue;
      const chunk = bytes.subarray(start, i + 1);
      const id = this.lookup.get(bin(chunk));
      if (id !== undefined) tokens.push(id);
      else for (const b of chunk) tokens.push(b + BYTE_OFFSET);
      start = i + 1;
    }
    return this.merge(tokens);
  }

  /**
   * run.c's merge loop (repeatedly merge the adjacent pair whose merged piece has the best score, the
   * leftmost on ties), done with a heap over a linked list: O(n log n) instead of O(n²), same result.
   */
  private merge(tokens: number[]): number[] {
    const n = tokens.length;
    const id = tokens.slice();
    const next = Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Array.from({ length: n }, (_, i) => i - 1);
    const ver = new Array<number>(n).fill(0);
    const heap = new CandidateHeap();
    const consider = (l: number, r: number): void => {
      if (l < 0 || r < 0) return;
      const m = this.lookup.get(this.keys[id[l]!]! + this.keys[id[r]!]!);
      if (m === undefined) return;
      const score = this.scores[m]!;
      if (score > MIN_SCORE) heap.push({ score, left: l, leftVer: ver[l]!, right: r, rightVer: ver[r]!, id: m });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const c = heap.pop();
      if (ver[c.left] !== c.leftVer || ver[c.right] !== c.rightVer || next[c.left] !== c.right) continue;
      id[c.left] = c.id;
      ver[c.left]!++;
      ver[c.right]!++; // the right node is gone
      const after = next[c.right]!;
      next[c.left] = after;
      if (after >= 0) prev[after] = c.left;
      consider(prev[c.left]!, c.left);
      consider(c.left, after);
    }
    const out: number[] = [];
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(id[i]!);
    return out;
  }

  /** The bytes run.c prints for `token` after `prev`: decode(prev, token) then safe_printf's filter. */
  pieceBytes(prev: number, token: number): Uint8Array {
    let p = this.pieces[token];
    if (!p) throw new RangeError(`llama2.c tokenizer: token id ${token} outside [0, ${this.pieces.length})`);
    // After BOS, sentencepiece strips the leading space.
    if (prev === BOS && p[0] === 0x20) p = p.subarray(1);
    // Raw-byte pieces look like <0x0A> (run.c: sscanf(piece, "<0x%02hhX>", &byte)).
    const m = /^<0x([0-9A-Fa-f]{1,2})/.exec(bin(p));
    if (m) p = Uint8Array.of(parseInt(m[1]!, 16));
    // safe_printf: a C string, so it ends at the first NUL; a lone non-printable byte is dropped.
    const nul = p.indexOf(0);
    if (nul >= 0) p = p.subarray(0, nul);
    if (p.length === 1 && !printable(p[0]!)) return new Uint8Array(0);
    return p;
  }

  /**
   * Decode as run.c prints a generation: a leading BOS is the prompt start and is not printed (the first
   * token is treated as following a BOS either way, so its leading space is dropped), and a later BOS
   * ends the text, as run.c stops when it samples BOS.
   */
  decode(ids: number[]): string {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i]!;
      if (t === BOS) {
        if (i === 0) continue;
        break;
      }
      chunks.push(this.pieceBytes(i === 0 ? BOS : ids[i - 1]!, t));
    }
    return new TextDecoder('utf-8').decode(Buffer.concat(chunks));
  }
}

/** Read a llama2.c tokenizer.bin holding `vocabSize` pieces (the model's vocab size: the file does not store it). */
export function loadLlama2cTokenizer(file: string, vocabSize: number): Llama2cTokenizer {
  assertLittleEndianHost();
  return withFile(file, (f) => {
    if (f.size < 4) throw formatError(file, 'max_token_length', `expected an int32, the file has ${f.size} bytes`);
    const all = f.read(0, f.size);
    const dv = new DataView(all.buffer);
    const maxLen = dv.getInt32(0, true);
    if (maxLen <= 0) throw formatError(file, 'max_token_length', `expected a positive integer, got ${maxLen}`);
    const pieces: Uint8Array[] = [];
    const scores = new Float32Array(vocabSize);
    let pos = 4;
    for (let id = 0; id < vocabSize; id++) {
      if (pos + 8 > f.size) throw formatError(file, `token ${id}`, `expected ${vocabSize} tokens (the model's vocab size), the file ends after ${id}`);
      scores[id] = dv.getFloat32(pos, true);
      const len = dv.getInt32(pos + 4, true);
      pos += 8;
      if (len < 0 || len > maxLen || pos + len > f.size) {
        throw formatError(file, `token ${id}.length`, `expected 0..${maxLen} bytes within the file, got ${len}`);
      }
      pieces.push(all.slice(pos, pos + len));
      pos += len;
    }
    if (pos !== f.size) {
      throw formatError(file, 'size', `${vocabSize} tokens end at byte ${pos}, but the file has ${f.size} bytes (wrong vocab size for this tokenizer?)`);
    }
    if (vocabSize < BYTE_OFFSET + 256) throw formatError(file, 'vocab size', `expected at least ${BYTE_OFFSET + 256} tokens (byte fallback), got ${vocabSize}`);
    return new Llama2cTokenizer(pieces, scores, maxLen);
  });
}

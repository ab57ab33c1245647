// Teacher weights read one tensor at a time, for jobs that must not hold a whole model (the streamed conversion):
// a checkpoint's safetensors files read by position from their header offsets (no whole-file read), or tensors
// already in memory (a llama2.c checkpoint, a model built in code) behind the same interface. Values are checked
// finite as they are read, with the same messages as loading (io/finite.ts).

import { Tensor, sizeOf } from '../tensor/tensor.js';
import { isHalf } from '../tensor/storage.js';
import { BinFile } from './binfile.js';
import { assertFiniteWeights } from './finite.js';
import { bf16ToF32, bytesPerElement, decodeToF32, encodeFromF32, f16ToF32, type StorageDtype } from './dtype.js';

/** Where a tensor's bytes lie: the file, the absolute byte offset and the stored dtype and shape. */
export interface StoredRef {
  shape: number[];
  dtype: StorageDtype;
  file: string;
  /** Absolute offset of the first byte in `file`. */
  offset: number;
}

export interface WeightSource {
  /** Names of the tensors held. */
  names(): string[];
  /** Shape and stored dtype of `name` (throws for a name not held: the caller checked the names). */
  info(name: string): { shape: readonly number[]; dtype: StorageDtype };
  /** The whole tensor in its stored dtype (F16/BF16 as 16-bit tensors, F32 as f32); a NaN/±∞ is a UserError. */
  read(name: string): Tensor;
  /**
   * The tensor's values as `dtype` bytes, in pieces of at most about `maxBytes` of stored data each, passed to `emit`
   * (stored bytes as they are when the dtypes agree, else widened to f32 and rounded to `dtype`, as saving from f32
   * does). Values are checked finite piece by piece. A piece is only valid during its `emit` call.
   */
  copy(name: string, dtype: StorageDtype, maxBytes: number, emit: (bytes: Uint8Array) => void): void;
  /** Release open files. */
  close(): void;
}

/**
 * A stored NaN/±∞ in `bits` (F16/BF16 patterns, an all-ones exponent): UserError naming the element. Two values per
 * 32-bit word: the exponent bits plus one at the exponent's lowest bit carry into bit 15 of a half exactly when that
 * exponent is all ones (0x7f80 + 0x80 = 0x8000 for bf16, 0x7c00 + 0x400 for f16), and never into the other half.
 */
export function checkHalf(file: string, name: string, shape: readonly number[], dtype: StorageDtype, bits: Uint16Array, start: number): void {
  const mask = dtype === 'BF16' ? 0x7f80 : 0x7c00;
  const low = dtype === 'BF16' ? 0x0080 : 0x0400;
  const mask2 = (mask | (mask << 16)) >>> 0;
  const low2 = (low | (low << 16)) >>> 0;
  const even = bits.byteOffset % 4 === 0;
  const words = even ? new Uint32Array(bits.buffer, bits.byteOffset, bits.length >>> 1) : null;
  let bad = 0;
  if (words) {
    for (let i = 0; i < words.length; i++) bad |= ((words[i]! & mask2) + low2) & 0x80008000;
  }
  for (let i = words ? 2 * words.length : 0; i < bits.length; i++) bad |= ((bits[i]! & mask) + low) & 0x8000;
  // Only a piece that holds a non-finite value is widened, for the message.
  if (bad !== 0) assertFiniteWeights(file, name, shape, dtype === 'BF16' ? bf16ToF32(bits) : f16ToF32(bits), start);
}

/** Bytes of `dtype` for stored `bytes` of `from` (the same bytes when the dtypes agree). */
function transcode(from: StorageDtype, to: StorageDtype, bytes: Uint8Array): Uint8Array {
  return from === to ? bytes : encodeFromF32(to, decodeToF32(from, bytes));
}

/** Tensors of safetensors files, read by position (pread) when asked for. */
export class FileSource implements WeightSource {
  private readonly files = new Map<string, BinFile>();
  private scratch: Uint8Array | null = null;

  constructor(private readonly refs: ReadonlyMap<string, StoredRef>) {}

  names(): string[] {
    return [...this.refs.keys()];
  }

  info(name: string): { shape: readonly number[]; dtype: StorageDtype } {
    return this.ref(name);
  }

  read(name: string): Tensor {
    const r = this.ref(name);
    const bytes = this.file(r.file).read(r.offset, sizeOf(r.shape) * bytesPerElement[r.dtype]);
    if (r.dtype === 'F32') {
      const data = decodeToF32('F32', bytes);
      assertFiniteWeights(r.file, name, r.shape, data);
      return new Tensor(r.shape, data);
    }
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    checkHalf(r.file, name, r.shape, r.dtype, bits, 0);
    return Tensor.half(r.shape, r.dtype === 'BF16' ? 'bf16' : 'f16', bits);
  }

  copy(name: string, dtype: StorageDtype, maxBytes: number, emit: (bytes: Uint8Array) => void): void {
    const r = this.ref(name);
    const bpe = bytesPerElement[r.dtype];
    const n = sizeOf(r.shape);
    const step = Math.max(1, Math.floor(maxBytes / bpe));
    const f = this.file(r.file);
    // One buffer for every piece: fresh buffers would cost a page fault per 4 KiB of the model.
    if (!this.scratch || this.scratch.byteLength < Math.min(n, step) * bpe) this.scratch = new Uint8Array(Math.min(n, step) * bpe);
    for (let s = 0; s < n; s += step) {
      const m = Math.min(step, n - s);
      const bytes = f.readInto(r.offset + s * bpe, this.scratch.subarray(0, m * bpe));
      if (r.dtype === 'F32') assertFiniteWeights(r.file, name, r.shape, decodeToF32('F32', bytes), s);
      else checkHalf(r.file, name, r.shape, r.dtype, new Uint16Array(bytes.buffer, bytes.byteOffset, m), s);
      emit(transcode(r.dtype, dtype, bytes));
    }
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
    this.scratch = null;
  }

  private ref(name: string): StoredRef {
    const r = this.refs.get(name);
    if (!r) throw new Error(`FileSource: no tensor ${name}`);
    return r;
  }

  private file(path: string): BinFile {
    let f = this.files.get(path);
    if (!f) this.files.set(path, (f = new BinFile(path)));
    return f;
  }
}

/** Tensors already in memory (values were checked when they were read, or the caller built them). f64 tensors are
 *  stored as F32 (what saving them writes). */
export class MemorySource implements WeightSource {
  constructor(private readonly tensors: ReadonlyMap<string, Tensor>, private readonly label: string) {}

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): { shape: readonly number[]; dtype: StorageDtype } {
    const t = this.tensor(name);
    return { shape: t.shape, dtype: t.dtype === 'bf16' ? 'BF16' : t.dtype === 'f16' ? 'F16' : 'F32' };
  }

  read(name: string): Tensor {
    return this.tensor(name);
  }

  copy(name: string, dtype: StorageDtype, maxBytes: number, emit: (bytes: Uint8Array) => void): void {
    const t = this.tensor(name);
    const { dtype: from } = this.info(name);
    const n = t.size;
    const step = Math.max(1, Math.floor(maxBytes / bytesPerElement[from]));
    const host = isHalf(t.dtype) ? t.halfBits() : t.data;
    for (let s = 0; s < n; s += step) {
      const piece = host.subarray(s, Math.min(n, s + step));
      let bytes: Uint8Array;
      if (piece instanceof Uint16Array) {
        checkHalf(this.label, name, t.shape, from, piece, s);
        bytes = new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
      } else {
        const f32 = piece instanceof Float32Array ? piece : Float32Array.from(piece);
        assertFiniteWeights(this.label, name, t.shape, f32, s);
        bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
      }
      emit(transcode(from, dtype, bytes));
    }
  }

  close(): void {}

  private tensor(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`MemorySource: no tensor ${name}`);
    return t;
  }
}

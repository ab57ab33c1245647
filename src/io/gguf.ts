// GGUF v3 (the llama.cpp model file) writer and reader. Layout, all little-endian:
//   "GGUF" · u32 version (3) · u64 tensor count · u64 KV count
//   KVs: string key · u32 value type · value (strings are u64 length + UTF-8 bytes; arrays are u32 item type,
//        u64 count, items)
//   tensor infos: string name · u32 n_dims · u64 dims[n_dims] (fastest-varying first: a row-major [out, in]
//        matrix is {in, out}) · u32 ggml type · u64 offset (relative to the data section, aligned)
//   padding to `general.alignment` (default 32) · data section (each tensor padded to the alignment).
// Tensor types written: F32, F16, BF16 and Q8_0 (blocks of 32 values: f16 scale d = max|x|/127, 32 int8 q,
// x ≈ d·q, as ggml's quantize_row_q8_0_ref). Writes go to a temporary name, then rename. The reader validates
// the whole header (magic, version, types, duplicate names, dims, alignment, offsets inside the file) before
// any data is touched, and every error names the file and the field.

import { formatError } from '../errors.js';
import { BinFile, assertLittleEndianHost, withFile, writeFileAtomic } from './binfile.js';
import { bf16ToF32, encodeFromF32, f16ToF32, f32BitsToF16 } from './dtype.js';
import { tempNameFor } from './safetensors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME (64) includes the terminating NUL. */
export const GGUF_MAX_NAME = 63;
export const GGML_MAX_DIMS = 4;
export const QK8_0 = 32;

/** ggml tensor types this module writes and reads (the numbering is ggml's `enum ggml_type`). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;
const GGML_TYPE_NAMES = Object.keys(GGML_TYPE) as GgmlTypeName[];

/** GGUF metadata value types (`enum gguf_type`). */
const VALUE_TYPE = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof VALUE_TYPE, 'array'>;
const TYPE_BY_CODE = new Map<number, keyof typeof VALUE_TYPE>(
  Object.entries(VALUE_TYPE).map(([k, v]) => [v, k as keyof typeof VALUE_TYPE]),
);

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufScalarType; value: GgufScalar[] };

/** Constructors for metadata values, so callers state the GGUF type of every key. */
export const kv = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  u64: (value: bigint): GgufValue => ({ type: 'u64', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strs: (value: string[]): GgufValue => ({ type: 'array', itemType: 'string', value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'f32', value: Array.from(value) }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'i32', value: Array.from(value) }),
};

/** A tensor to write: f32 values in row-major order, dims fastest-first (GGUF order), stored as `type`. */
export interface GgufTensorIn {
  name: string;
  dims: readonly number[];
  type: GgmlTypeName;
  data: Float32Array;
}

/** A tensor as read: its info and the raw stored bytes (decode with ggufTensorToF32). */
export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: GgmlTypeName;
  /** Offset inside the data section. */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  version: number;
  alignment: number;
  /** Metadata in file order (a Map keeps it). */
  kvs: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the data section. */
  dataStart: number;
  fileSize: number;
}

const elementCount = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Bytes a tensor of `type` and `dims` occupies (Q8_0 needs dims[0] to be a multiple of 32). */
export function ggmlTensorBytes(type: GgmlTypeName, dims: readonly number[]): number {
  const n = elementCount(dims);
  switch (type) {
    case 'F32':
      return 4 * n;
    case 'F16':
    case 'BF16':
      return 2 * n;
    case 'Q8_0':
      return (n / QK8_0) * (2 + QK8_0);
    default: {
      const never: never = type;
      throw new Error(`unknown ggml type ${String(never)}`);
    }
  }
}

/**
 * Q8_0 quantisation, as ggml's quantize_row_q8_0_ref: per block of 32 values, d = max|x|/127 (stored as f16),
 * q = round(x/d) (computed with the f32 d), x ≈ f16(d)·q. Length must be a multiple of 32.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % QK8_0 !== 0) throw new Error(`quantizeQ8_0: ${x.length} values is not a multiple of ${QK8_0}`);
  const nb = x.length / QK8_0;
  const out = new Uint8Array(nb * (2 + QK8_0));
  const dv = new DataView(out.buffer);
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(x[b * QK8_0 + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    f32[0] = d;
    const o = b * (2 + QK8_0);
    dv.setUint16(o, f32BitsToF16(bits[0]!), true);
    for (let j = 0; j < QK8_0; j++) {
      const v = Math.fround(x[b * QK8_0 + j]! * id);
      // C roundf: halves away from zero
      dv.setInt8(o + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
    }
  }
  return out;
}

export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = new Uint16Array(1);
  for (let b = 0; b < n / QK8_0; b++) {
    const o = b * (2 + QK8_0);
    h[0] = dv.getUint16(o, true);
    const d = f16ToF32(h)[0]!;
    for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = d * dv.getInt8(o + 2 + j);
  }
  return out;
}

/** Stored bytes of f32 values as `type`. */
export function encodeGgmlTensor(type: GgmlTypeName, data: Float32Array): Uint8Array {
  switch (type) {
    case 'F32':
    case 'F16':
    case 'BF16':
      return encodeFromF32(type, data); // the same bytes safetensors stores
    case 'Q8_0':
      return quantizeQ8_0(data);
    default: {
      const never: never = type;
      throw new Error(`unknown ggml type ${String(never)}`);
    }
  }
}

/** Stored bytes → f32 values (exact for F32/F16/BF16; Q8_0 dequantised). */
export function decodeGgmlTensor(type: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array {
  const aligned = (k: number): Uint8Array => (bytes.byteOffset % k === 0 ? bytes : bytes.slice());
  switch (type) {
    case 'F32': {
      const b = aligned(4);
      return new Float32Array(b.buffer, b.byteOffset, n).slice();
    }
    case 'F16':
    case 'BF16': {
      const b = aligned(2);
      const u = new Uint16Array(b.buffer, b.byteOffset, n);
      return type === 'F16' ? f16ToF32(u) : bf16ToF32(u);
    }
    case 'Q8_0':
      return dequantizeQ8_0(bytes, n);
    default: {
      const never: never = type;
      throw new Error(`unknown ggml type ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Writer

/** Growing little-endian byte buffer for the header. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(v: number): void { this.ensure(1); this.dv.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.ensure(1); this.dv.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.ensure(2); this.dv.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.ensure(2); this.dv.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.ensure(4); this.dv.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.ensure(4); this.dv.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.ensure(4); this.dv.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.ensure(8); this.dv.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: bigint): void { this.ensure(8); this.dv.setBigUint64(this.length, v, true); this.length += 8; }
  i64(v: bigint): void { this.ensure(8); this.dv.setBigInt64(this.length, v, true); this.length += 8; }
  bytes(b: Uint8Array): void { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  zeros(n: number): void { this.ensure(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

const INT_RANGE: Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', [number, number]> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff], u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

function writeScalar(w: ByteWriter, type: GgufScalarType, v: GgufScalar, key: string): void {
  const bad = (): Error => new Error(`writeGguf: key ${key}: value ${String(v)} is not a valid ${type}`);
  switch (type) {
    case 'u8': case 'i8': case 'u16': case 'i16': case 'u32': case 'i32': {
      const [lo, hi] = INT_RANGE[type];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw bad();
      w[type](v);
      return;
    }
    case 'f32': case 'f64':
      if (typeof v !== 'number') throw bad();
      w[type](v);
      return;
    case 'u64': case 'i64':
      if (typeof v !== 'bigint') throw bad();
      w[type](v);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw bad();
      w.u8(v ? 1 : 0);
      return;
    case 'string':
      if (typeof v !== 'string') throw bad();
      w.str(v);
      return;
    default: {
      const never: never = type;
      throw new Error(`unknown GGUF type ${String(never)}`);
    }
  }
}

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  w.u32(VALUE_TYPE[v.type]);
  if (v.type === 'array') {
    w.u32(VALUE_TYPE[v.itemType]);
    w.u64(BigInt(v.value.length));
    for (const x of v.value) writeScalar(w, v.itemType, x, key);
  } else {
    writeScalar(w, v.type, v.value, key);
  }
}

const padTo = (n: number, a: number): number => (a - (n % a)) % a;

/**
 * Write a GGUF v3 file: metadata (in the given order; `general.alignment` is honoured when present, else 32 is
 * used and written) and tensors (in order, each at an aligned offset). Written under a temporary name, then
 * renamed, so a failure never leaves a partial file at `file`.
 */
export function writeGguf(file: string, metadata: Map<string, GgufValue>, tensors: readonly GgufTensorIn[]): void {
  assertLittleEndianHost();
  const kvs = new Map(metadata);
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = kvs.get('general.alignment');
  if (al) {
    if (al.type !== 'u32' || al.value <= 0 || al.value % 8 !== 0) throw new Error('writeGguf: general.alignment must be a u32 multiple of 8');
    alignment = al.value;
  } else {
    kvs.set('general.alignment', kv.u32(alignment));
  }
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(BigInt(tensors.length));
  w.u64(BigInt(kvs.size));
  for (const [k, v] of kvs) {
    if (k === '') throw new Error('writeGguf: empty metadata key');
    w.str(k);
    writeValue(w, k, v);
  }
  const names = new Set<string>();
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '' || Buffer.byteLength(t.name, 'utf8') > GGUF_MAX_NAME) throw new Error(`writeGguf: tensor name "${t.name}" must be 1..${GGUF_MAX_NAME} bytes`);
    if (names.has(t.name)) throw new Error(`writeGguf: tensor "${t.name}" given twice`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > GGML_MAX_DIMS || t.dims.some((d) => !Number.isSafeInteger(d) || d < 1)) {
      throw new Error(`writeGguf: tensor ${t.name}: dims {${t.dims.join(', ')}} must be 1..${GGML_MAX_DIMS} positive integers`);
    }
    if (elementCount(t.dims) !== t.data.length) throw new Error(`writeGguf: tensor ${t.name}: dims {${t.dims.join(', ')}} need ${elementCount(t.dims)} values, got ${t.data.length}`);
    if (t.type === 'Q8_0' && t.dims[0]! % QK8_0 !== 0) throw new Error(`writeGguf: tensor ${t.name}: Q8_0 needs the first dim to be a multiple of ${QK8_0}, got ${t.dims[0]}`);
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(BigInt(d));
    w.u32(GGML_TYPE[t.type]);
    w.u64(BigInt(offset));
    const nb = ggmlTensorBytes(t.type, t.dims);
    sizes.push(nb);
    offset += nb + padTo(nb, alignment);
  }
  w.zeros(padTo(w.length, alignment));
  const zeros = new Uint8Array(alignment);

  const tmp = tempNameFor(file);
  writeFileAtomic(file, tmp, (write) => {
    write(w.result());
    tensors.forEach((t, i) => {
      const bytes = encodeGgmlTensor(t.type, t.data);
      if (bytes.byteLength !== sizes[i]) throw new Error(`writeGguf: tensor ${t.name}: encoded ${bytes.byteLength} bytes, expected ${sizes[i]}`);
      write(bytes);
      write(zeros.subarray(0, padTo(bytes.byteLength, alignment)));
    });
  });
}


// ---------------------------------------------------------------------------------------------------------
// Reader

/** Sequential reads of the header through positioned reads of the file, bounds-checked against its size. */
class HeaderCursor {
  pos = 0;
  private chunk: Uint8Array = new Uint8Array(0);
  private chunkStart = 0;

  constructor(
    private readonly f: BinFile,
    private readonly file: string,
  ) {}

  private take(n: number, field: string): DataView {
    if (n > this.f.size - this.pos) {
      throw formatError(this.file, field, `needs ${n} bytes at offset ${this.pos}, past the end of the file (${this.f.size} bytes)`);
    }
    const rel = this.pos - this.chunkStart;
    if (rel < 0 || rel + n > this.chunk.length) {
      this.chunkStart = this.pos;
      this.chunk = this.f.read(this.pos, Math.min(this.f.size - this.pos, Math.max(n, 1 << 20)));
    }
    const dv = new DataView(this.chunk.buffer, this.chunk.byteOffset + (this.pos - this.chunkStart), n);
    this.pos += n;
    return dv;
  }
  u8(field: string): number { return this.take(1, field).getUint8(0); }
  i8(field: string): number { return this.take(1, field).getInt8(0); }
  u16(field: string): number { return this.take(2, field).getUint16(0, true); }
  i16(field: string): number { return this.take(2, field).getInt16(0, true); }
  u32(field: string): number { return this.take(4, field).getUint32(0, true); }
  i32(field: string): number { return this.take(4, field).getInt32(0, true); }
  f32(field: string): number { return this.take(4, field).getFloat32(0, true); }
  f64(field: string): number { return this.take(8, field).getFloat64(0, true); }
  u64(field: string): bigint { return this.take(8, field).getBigUint64(0, true); }
  i64(field: string): bigint { return this.take(8, field).getBigInt64(0, true); }
  /** A u64 that must fit a JS safe integer and be ≤ max. */
  count(field: string, max: number): number {
    const v = this.u64(field);
    if (v > BigInt(max)) throw formatError(this.file, field, `${v} exceeds what the file can hold (at most ${max})`);
    return Number(v);
  }
  str(field: string): string {
    const n = this.count(`${field} (string length)`, this.f.size - this.pos - 8);
    const dv = this.take(n, field);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(dv.buffer, dv.byteOffset, n));
    } catch {
      throw formatError(this.file, field, 'expected UTF-8 text');
    }
  }
}

function readScalar(c: HeaderCursor, type: GgufScalarType, field: string, file: string): GgufScalar {
  switch (type) {
    case 'u8': return c.u8(field);
    case 'i8': return c.i8(field);
    case 'u16': return c.u16(field);
    case 'i16': return c.i16(field);
    case 'u32': return c.u32(field);
    case 'i32': return c.i32(field);
    case 'f32': return c.f32(field);
    case 'f64': return c.f64(field);
    case 'u64': return c.u64(field);
    case 'i64': return c.i64(field);
    case 'bool': {
      const b = c.u8(field);
      if (b > 1) throw formatError(file, field, `expected a bool (0 or 1), got ${b}`);
      return b === 1;
    }
    case 'string': return c.str(field);
    default: {
      const never: never = type;
      throw new Error(`unknown GGUF type ${String(never)}`);
    }
  }
}

const SCALAR_BYTES: Partial<Record<GgufScalarType, number>> = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 };

function readValue(c: HeaderCursor, field: string, file: string, fileSize: number): GgufValue {
  const code = c.u32(`${field} (type)`);
  const type = TYPE_BY_CODE.get(code);
  if (type === undefined) throw formatError(file, `${field} (type)`, `expected a GGUF value type 0..12, got ${code}`);
  if (type !== 'array') return { type, value: readScalar(c, type, field, file) } as GgufValue;
  const icode = c.u32(`${field} (array item type)`);
  const itemType = TYPE_BY_CODE.get(icode);
  if (itemType === undefined || itemType === 'array') {
    throw formatError(file, `${field} (array item type)`, `expected a scalar GGUF type (nested arrays are not supported), got ${icode}`);
  }
  // Each item takes at least one byte (strings at least 8): a count beyond that runs past the end of the file.
  const n = c.count(`${field} (array length)`, Math.floor((fileSize - c.pos) / (SCALAR_BYTES[itemType] ?? 8)));
  const value: GgufScalar[] = new Array<GgufScalar>(n);
  for (let i = 0; i < n; i++) value[i] = readScalar(c, itemType, `${field}[${i}]`, file);
  return { type: 'array', itemType, value };
}

function parseGguf(file: string, f: BinFile): GgufFile {
  const c = new HeaderCursor(f, file);
  if (f.size < 4) throw formatError(file, 'magic', `expected "GGUF", the file has only ${f.size} bytes`);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(magic);
    throw formatError(file, 'magic', `expected "GGUF", got ${JSON.stringify(b.toString('latin1'))} (not a GGUF file)`);
  }
  const version = c.u32('version');
  if (version !== GGUF_VERSION) throw formatError(file, 'version', `expected ${GGUF_VERSION}, got ${version}`);
  // Every tensor info and KV takes well over 8 bytes: counts beyond size/8 are garbage.
  const nTensors = c.count('tensor count', Math.floor(f.size / 8));
  const nKv = c.count('metadata count', Math.floor(f.size / 8));
  const kvs = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`metadata[${i}].key`);
    if (key === '') throw formatError(file, `metadata[${i}].key`, 'expected a non-empty key');
    if (kvs.has(key)) throw formatError(file, `metadata "${key}"`, 'key appears more than once');
    kvs.set(key, readValue(c, `metadata "${key}"`, file, f.size));
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = kvs.get('general.alignment');
  if (al) {
    if (al.type !== 'u32' || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      throw formatError(file, 'metadata "general.alignment"', `expected a u32 power of two, got ${al.type} ${String(al.value)}`);
    }
    alignment = al.value;
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`tensor[${i}].name`);
    const field = `tensor "${name}"`;
    if (name === '' || Buffer.byteLength(name) > GGUF_MAX_NAME) throw formatError(file, `tensor[${i}].name`, `expected 1..${GGUF_MAX_NAME} bytes, got ${JSON.stringify(name)}`);
    if (names.has(name)) throw formatError(file, field, 'tensor name appears more than once');
    names.add(name);
    const nDims = c.u32(`${field}.n_dims`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS) throw formatError(file, `${field}.n_dims`, `expected 1..${GGML_MAX_DIMS}, got ${nDims}`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.u64(`${field}.dims[${d}]`);
      if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw formatError(file, `${field}.dims[${d}]`, `expected a positive size, got ${v}`);
      dims.push(Number(v));
    }
    if (!Number.isSafeInteger(elementCount(dims))) throw formatError(file, `${field}.dims`, `{${dims.join(', ')}} has too many elements`);
    const tcode = c.u32(`${field}.type`);
    const type = GGML_TYPE_NAMES.find((k) => GGML_TYPE[k] === tcode);
    if (type === undefined) throw formatError(file, `${field}.type`, `expected a ggml type this tool reads (${GGML_TYPE_NAMES.map((k) => `${k}=${GGML_TYPE[k]}`).join(', ')}), got ${tcode}`);
    if (type === 'Q8_0' && dims[0]! % QK8_0 !== 0) throw formatError(file, `${field}.dims[0]`, `Q8_0 needs a multiple of ${QK8_0}, got ${dims[0]}`);
    const offBig = c.u64(`${field}.offset`);
    if (offBig > BigInt(f.size)) throw formatError(file, `${field}.offset`, `${offBig} lies past the end of the file (${f.size} bytes)`);
    const offset = Number(offBig);
    if (offset % alignment !== 0) throw formatError(file, `${field}.offset`, `${offset} is not a multiple of the alignment ${alignment}`);
    tensors.push({ name, dims, type, offset, nbytes: ggmlTensorBytes(type, dims) });
  }
  const dataStart = c.pos + padTo(c.pos, alignment);
  const dataSize = f.size - dataStart;
  if (dataSize < 0 && nTensors > 0) throw formatError(file, 'data section', `expected it at offset ${dataStart}, past the end of the file (${f.size} bytes)`);
  for (const t of tensors) {
    if (t.offset + t.nbytes > dataSize) {
      throw formatError(
        file, `tensor "${t.name}".offset`,
        `[${t.offset}, ${t.offset + t.nbytes}) (${t.type} {${t.dims.join(', ')}}) runs past the end of the data section (${Math.max(0, dataSize)} bytes)`,
      );
    }
  }
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const a = byOffset[i - 1]!;
    const b = byOffset[i]!;
    if (b.offset < a.offset + a.nbytes) {
      throw formatError(file, `tensor "${b.name}".offset`, `[${b.offset}, ${b.offset + b.nbytes}) overlaps tensor "${a.name}" [${a.offset}, ${a.offset + a.nbytes})`);
    }
  }
  return { version, alignment, kvs, tensors, dataStart, fileSize: f.size };
}

/** Parse and validate a GGUF file's header (metadata and tensor infos); reads no tensor data. */
export function readGgufHeader(file: string): GgufFile {
  assertLittleEndianHost();
  return withFile(file, (f) => parseGguf(file, f));
}

/** Read a GGUF file: the header and the raw bytes of every tensor (or those `keep` selects). */
export function readGguf(
  file: string,
  keep: (name: string) => boolean = () => true,
): GgufFile & { data: Map<string, Uint8Array> } {
  assertLittleEndianHost();
  return withFile(file, (f) => {
    const h = parseGguf(file, f);
    const data = new Map<string, Uint8Array>();
    for (const t of h.tensors) if (keep(t.name)) data.set(t.name, f.read(h.dataStart + t.offset, t.nbytes));
    return { ...h, data };
  });
}

/** One tensor's values as f32. */
export function ggufTensorToF32(t: GgufTensorInfo, bytes: Uint8Array): Float32Array {
  return decodeGgmlTensor(t.type, bytes, elementCount(t.dims));
}

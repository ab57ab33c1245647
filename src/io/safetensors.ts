// safetensors read/write (F32, F16, BF16; everything else is refused). Layout: u64 LE header length N,
// N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the raw little-endian row-major data (offsets relative to the byte after the header).
// Reads validate the header completely before touching data; writes go to a temporary name, then rename.

import { sizeOf } from '../tensor/tensor.js';
import { formatError } from '../errors.js';
import { BinFile, assertLittleEndianHost, withFile, writeFileAtomic } from './binfile.js';
import { bf16ToF32, bytesPerElement, decodeToF32, encodeFromF32, f16ToF32, type StorageDtype } from './dtype.js';
import { isObject, jsonPreview } from './json.js';

export type SafetensorsDtype = StorageDtype;

/** One tensor as read: its stored dtype and shape, values widened to f32 (F16/BF16: on first access of `data`,
 *  so a reader that keeps the 16-bit `bits` never holds an f32 copy). */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  readonly data: Float32Array;
  /** The raw 16-bit patterns of an F16/BF16 tensor (absent for F32). */
  bits?: Uint16Array;
}

/** A tensor over freshly read bytes; F16/BF16 keep their bits and widen lazily. */
export function tensorOf(dtype: SafetensorsDtype, shape: number[], bytes: Uint8Array): SafetensorsTensor {
  if (dtype === 'F32') return { dtype, shape, data: decodeToF32(dtype, bytes) };
  const bits = bytes.byteOffset % 2 === 0
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2)
    : new Uint16Array(bytes.slice().buffer);
  let wide: Float32Array | null = null;
  return {
    dtype,
    shape,
    bits,
    get data(): Float32Array {
      wide ??= dtype === 'F16' ? f16ToF32(bits) : bf16ToF32(bits);
      return wide;
    },
  };
}

/** One header entry; begin/end are byte offsets into the data area. */
export interface SafetensorsEntryInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Entries in file order (by begin offset). */
  entries: SafetensorsEntryInfo[];
  metadata: Record<string, string>;
  /** Absolute file offset of the data area (8 + N). */
  dataStart: number;
  fileSize: number;
}

/** A tensor to write; data is f32, stored as `dtype` (default F32). */
export interface SafetensorsWriteEntry {
  name: string;
  shape: readonly number[];
  data: Float32Array;
  dtype?: SafetensorsDtype;
}

const DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16'];
/** The reference implementation refuses headers above 100 MB; so do we (a guard against garbage lengths). */
const MAX_HEADER_BYTES = 100_000_000;

/** Top-level keys of a JSON object text in order, duplicates kept (JSON.parse silently keeps the last). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && /\s/.test(text[k]!)) k++;
        if (text[k] === ':') keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    i++;
  }
  return keys;
}

function parseHeader(file: string, f: BinFile): SafetensorsHeader {
  if (f.size < 8) throw formatError(file, 'header length', `expected an 8-byte header length, but the file has only ${f.size} bytes`);
  const lenBig = new DataView(f.read(0, 8).buffer).getBigUint64(0, true);
  if (lenBig > BigInt(f.size - 8)) {
    throw formatError(file, 'header length', `${lenBig} bytes runs past the end of the file (${f.size} bytes)`);
  }
  const n = Number(lenBig);
  if (n > MAX_HEADER_BYTES) throw formatError(file, 'header length', `${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(f.read(8, n));
  } catch {
    throw formatError(file, 'header', 'expected UTF-8 text');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw formatError(file, 'header', `expected valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw formatError(file, 'header', 'expected a JSON object');
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) throw formatError(file, `tensor "${k}"`, 'name appears more than once in the header');
    seen.add(k);
  }

  const dataStart = 8 + n;
  const dataSize = f.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntryInfo[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(v)) throw formatError(file, '__metadata__', 'expected an object of string values');
      for (const [mk, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') throw formatError(file, `__metadata__.${mk}`, `expected a string, got ${jsonPreview(mv)}`);
        metadata[mk] = mv;
      }
      continue;
    }
    const field = `tensor "${name}"`;
    if (!isObject(v)) throw formatError(file, field, 'expected an object {dtype, shape, data_offsets}');
    const dtype = v.dtype;
    if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
      throw formatError(file, `${field}.dtype`, `expected one of ${DTYPES.join(', ')}, got ${jsonPreview(dtype)}`);
    }
    const shape = v.shape;
    if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)) {
      throw formatError(file, `${field}.shape`, `expected an array of non-negative integers, got ${jsonPreview(shape)}`);
    }
    const offs = v.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      offs.some((o) => typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) ||
      (offs[0] as number) > (offs[1] as number)
    ) {
      throw formatError(file, `${field}.data_offsets`, `expected [begin, end] with 0 ≤ begin ≤ end, got ${jsonPreview(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataSize) {
      throw formatError(file, `${field}.data_offsets`, `[${begin}, ${end}] lies outside the data area (${dataSize} bytes)`);
    }
    const dt = dtype as SafetensorsDtype;
    const want = sizeOf(shape as number[]) * bytesPerElement[dt];
    if (end - begin !== want) {
      throw formatError(
        file,
        `${field}.data_offsets`,
        `[${begin}, ${end}] holds ${end - begin} bytes, but ${dt} shape [${(shape as number[]).join(', ')}] needs ${want}`,
      );
    }
    entries.push({ name, dtype: dt, shape: (shape as number[]).slice(), begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const a = entries[i - 1]!;
    const b = entries[i]!;
    if (b.begin < a.end) {
      throw formatError(file, `tensor "${b.name}".data_offsets`, `[${b.begin}, ${b.end}] overlaps tensor "${a.name}" [${a.begin}, ${a.end}]`);
    }
  }
  return { entries, metadata, dataStart, fileSize: f.size };
}

/** Parse and validate the header only (names, dtypes, shapes, offsets); reads no tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  assertLittleEndianHost();
  return withFile(file, (f) => parseHeader(file, f));
}

/**
 * Read a safetensors file; every tensor is widened to f32 (F16/BF16 exactly).
 * `keep` selects which tensors to read (all by default); the whole header is validated regardless.
 */
export function readSafetensors(
  file: string,
  keep: (name: string) => boolean = () => true,
): { tensors: Map<string, SafetensorsTensor>; metadata: Record<string, string> } {
  assertLittleEndianHost();
  return withFile(file, (f) => {
    const h = parseHeader(file, f);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const e of h.entries) {
      if (!keep(e.name)) continue;
      const bytes = f.read(h.dataStart + e.begin, e.end - e.begin);
      tensors.set(e.name, tensorOf(e.dtype, e.shape, bytes));
    }
    return { tensors, metadata: h.metadata };
  });
}

export { tempNameFor } from './output.js';
import { tempNameFor } from './output.js';

/**
 * Write tensors (in the given order) to a safetensors file. F16/BF16 round to nearest even.
 * The header is padded with spaces so the data starts 8-byte aligned. Written under a temporary
 * name and renamed into place, so a failure never leaves a partial file at `file`.
 */
export function writeSafetensors(file: string, entries: readonly SafetensorsWriteEntry[], metadata?: Record<string, string>): void {
  assertLittleEndianHost();
  for (const e of entries) {
    if (sizeOf(e.shape) !== e.data.length) {
      throw new Error(`writeSafetensors: ${e.name}: shape [${e.shape.join(', ')}] needs ${sizeOf(e.shape)} values, got ${e.data.length}`);
    }
  }
  const head = safetensorsHeader(entries.map((e) => ({ name: e.name, shape: e.shape, dtype: e.dtype ?? 'F32' })), metadata);
  const tmp = tempNameFor(file);
  writeFileAtomic(file, tmp, (write) => {
    write(head);
    for (const e of entries) write(encodeFromF32(e.dtype ?? 'F32', e.data));
  });
}

/** A tensor's header entry: name, shape and stored dtype (its bytes follow the previous tensor's). */
export interface SafetensorsHeaderEntry {
  name: string;
  shape: readonly number[];
  dtype: SafetensorsDtype;
}

/**
 * The bytes before the data area: u64 LE header length N, then the JSON header {metadata, name: {dtype, shape,
 * data_offsets}} for `entries` laid out back to back in order, padded with spaces so the data starts 8-byte aligned,
 * or to exactly `length` bytes in all when given (a writer that reserved room for the header before it knew every
 * shape: io/safetensors-stream.ts).
 */
export function safetensorsHeader(entries: readonly SafetensorsHeaderEntry[], metadata?: Record<string, string>, length?: number): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata ${k} must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const e of entries) {
    if (e.name === '' || e.name === '__metadata__') throw new Error(`writeSafetensors: invalid tensor name "${e.name}"`);
    if (Object.hasOwn(header, e.name)) throw new Error(`writeSafetensors: tensor "${e.name}" given twice`);
    if (e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`writeSafetensors: ${e.name}: bad shape [${e.shape.join(', ')}]`);
    const nbytes = sizeOf(e.shape) * bytesPerElement[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: [...e.shape], data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const total = length ?? 8 + json.length + ((8 - ((8 + json.length) % 8)) % 8);
  if (total < 8 + json.length || total % 8 !== 0) throw new Error(`safetensorsHeader: ${json.length} bytes of header do not fit ${total} (8-aligned)`);
  const head = Buffer.alloc(total, 0x20);
  head.writeBigUInt64LE(BigInt(total - 8), 0);
  json.copy(head, 8);
  return head;
}

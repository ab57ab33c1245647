// Half-precision formats (BF16, IEEE F16) ↔ f32, and the checkpoint-file dtype names (F32/F16/BF16).
// Widening is exact; narrowing rounds to nearest, ties to even, overflows to ±inf, keeps NaN a (quiet) NaN.

export type StorageDtype = 'F32' | 'F16' | 'BF16';

export const bytesPerElement: Record<StorageDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** f32 bit views of a Float32Array (same memory). */
function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** BF16 is the top half of an f32: widen by shifting. */
export function bf16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const d = bitsOf(dst);
  for (let i = 0; i < src.length; i++) d[i] = src[i]! << 16;
  return dst;
}

/** f32 → BF16, round to nearest even on the 16 dropped bits. */
export function f32ToBf16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const s = bitsOf(src);
  for (let i = 0; i < s.length; i++) {
    const x = s[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) dst[i] = (x >>> 16) | 0x0040; // NaN: keep sign, force quiet
    else dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

let f16Table: Float32Array | null = null;

/** Value of every F16 bit pattern (built once, 256 KiB). */
function f16Values(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    let v: number;
    if (e === 0) v = m * 2 ** -24;
    else if (e === 31) v = m === 0 ? Infinity : NaN;
    else v = (1 + m / 1024) * 2 ** (e - 15);
    t[h] = h & 0x8000 ? -v : v;
  }
  f16Table = t;
  return t;
}

export function f16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = f16Values();
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!;
  return dst;
}

/** One f32 bit pattern → F16 bits, round to nearest even (subnormals included). */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00; // NaN
  if (abs >= 0x47800000) return sign | 0x7c00; // ≥ 2^16 (or inf): inf
  const e = abs >>> 23;
  if (e < 113) {
    // Below 2^-14: an F16 subnormal m·2^-24 with m = M·2^(e−126), M the 24-bit significand.
    const shift = 126 - e;
    if (shift > 24) return sign;
    const M = (abs & 0x7fffff) | (e === 0 ? 0 : 0x800000);
    let q = M >>> shift;
    const r = M - q * 2 ** shift;
    const half = 2 ** (shift - 1);
    if (r > half || (r === half && q & 1)) q++;
    return sign | q; // q may carry into 0x400, the smallest normal: still the right bits
  }
  let q = ((e - 112) << 10) | ((abs & 0x7fffff) >>> 13);
  const r = abs & 0x1fff;
  if (r > 0x1000 || (r === 0x1000 && q & 1)) q++; // a carry into the exponent (up to inf) is correct
  return sign | q;
}

export function f32ToF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const s = bitsOf(src);
  for (let i = 0; i < s.length; i++) dst[i] = f32BitsToF16(s[i]!);
  return dst;
}

/** Raw little-endian bytes of `dtype` → f32 values (bytes must be a fresh, aligned buffer). */
export function decodeToF32(dtype: StorageDtype, bytes: Uint8Array): Float32Array {
  switch (dtype) {
    case 'F32':
      return bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Float32Array(bytes.slice().buffer);
    case 'F16':
    case 'BF16': {
      const u = bytes.byteOffset % 2 === 0
        ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2)
        : new Uint16Array(bytes.slice().buffer);
      return dtype === 'F16' ? f16ToF32(u) : bf16ToF32(u);
    }
    default: {
      const never: never = dtype;
      throw new Error(`unknown dtype ${String(never)}`);
    }
  }
}

/** f32 values → raw little-endian bytes of `dtype`. */
export function encodeFromF32(dtype: StorageDtype, data: Float32Array): Uint8Array {
  switch (dtype) {
    case 'F32':
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    case 'F16': {
      const u = f32ToF16(data);
      return new Uint8Array(u.buffer, u.byteOffset, u.byteLength);
    }
    case 'BF16': {
      const u = f32ToBf16(data);
      return new Uint8Array(u.buffer, u.byteOffset, u.byteLength);
    }
    default: {
      const never: never = dtype;
      throw new Error(`unknown dtype ${String(never)}`);
    }
  }
}

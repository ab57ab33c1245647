// Storage of decode-cache rows in a chosen dtype: f32 (the backend's own buffers, see attention/*), f16, bf16, or
// int8 with symmetric absmax scales. A row of W values per (batch row, position) splits into a quantised part of Q
// columns in G equal groups (one f32 scale per group per token when int8) and a tail of W − Q columns kept in bf16
// when int8 (MLA: the latent c_kv is quantised with one scale per token, the rope key stays 16-bit, as SnapMLA does
// for fp8; GQA: one scale per token per kv head, no tail).
// Legend: B batch, S capacity, W row width, Q quantised columns, G groups, Q/G group width.

import { bf16ToF32, f16ToF32, f32BitsToF16 } from '../tensor/half.js';

export const CACHE_DTYPES = ['f32', 'f16', 'bf16', 'int8'] as const;
export type CacheDtype = (typeof CACHE_DTYPES)[number];

export function isCacheDtype(s: string): s is CacheDtype {
  return (CACHE_DTYPES as readonly string[]).includes(s);
}

/** How a row splits: Q leading columns in G groups (int8: one scale each), the rest a 16-bit tail under int8. */
export interface RowLayout {
  width: number;
  quantCols: number;
  groups: number;
}

/**
 * Bytes one token's row takes in a dtype: f32 4W; f16/bf16 2W; int8 Q + 4G (scales) + 2(W − Q) (bf16 tail).
 * (f32 is 4W even where the ref backend computes in f64: the figure users compare against.)
 */
export function rowBytes(dtype: CacheDtype, l: RowLayout): number {
  if (dtype === 'f32') return 4 * l.width;
  if (dtype === 'int8') return l.quantCols + 4 * l.groups + 2 * (l.width - l.quantCols);
  return 2 * l.width;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** f32 → bf16 bits, round to nearest even (NaN stays NaN). */
function bf16Bits(x: number): number {
  F32[0] = x;
  const u = U32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 → f16 bits, round to nearest even. */
function f16Bits(x: number): number {
  F32[0] = x;
  return f32BitsToF16(U32[0]!);
}

/** One 16-bit value back to a number. */
const H1 = new Uint16Array(1);
const O1 = new Float32Array(1);
function halfToNumber(bits: number, bf: boolean): number {
  H1[0] = bits;
  return (bf ? bf16ToF32(H1, O1) : f16ToF32(H1, O1))[0]!;
}

/**
 * int8 symmetric absmax of one group x (n values): s = max|x| / 127, q = clamp(round(x / s), −127, 127), x ≈ q·s with
 * |x − q·s| ≤ s/2 per element. An all-zero group has s = 0 and q = 0. Returns s (rounded to f32, as stored).
 */
export function quantizeGroup(x: ArrayLike<number>, off: number, n: number, q: Int8Array, qOff: number): number {
  let a = 0;
  for (let j = 0; j < n; j++) a = Math.max(a, Math.abs(x[off + j]!));
  const s = Math.fround(a / 127);
  for (let j = 0; j < n; j++) q[qOff + j] = s === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(x[off + j]! / s)));
  return s;
}

/** Rows of a decode cache stored in f16, bf16 or int8; written by position, read back dequantised. */
export class QuantRows {
  private readonly half: Uint16Array | null = null; // (B, S, W) f16/bf16, or (B, S, W − Q) bf16 tail under int8
  private readonly q: Int8Array | null = null; // (B, S, Q) under int8
  private readonly scales: Float32Array | null = null; // (B, S, G) under int8

  constructor(
    readonly dtype: Exclude<CacheDtype, 'f32'>,
    readonly batch: number,
    readonly capacity: number,
    readonly layout: RowLayout,
  ) {
    const n = batch * capacity;
    const { width: W, quantCols: Q, groups: G } = layout;
    // groups 0 with no quantised columns: a row kept whole in the 16-bit tail (an xKV layer's rope key).
    if ((G === 0 ? Q !== 0 : Q % G !== 0) || Q > W) throw new Error(`QuantRows: ${Q} quantised columns do not split into ${G} groups of a ${W}-wide row`);
    if (dtype === 'int8') {
      this.q = new Int8Array(n * Q);
      this.scales = new Float32Array(n * G);
      this.half = new Uint16Array(n * (W - Q));
    } else {
      this.half = new Uint16Array(n * W);
    }
  }

  /** Bytes held (values, scales and tail). */
  bytes(): number {
    return (this.half?.byteLength ?? 0) + (this.q?.byteLength ?? 0) + (this.scales?.byteLength ?? 0);
  }

  /** Store rows (B, T, W) (row-major, any float array) at positions P..P+T−1 of every batch row. */
  write(rows: ArrayLike<number>, B: number, T: number, P: number): void {
    const { width: W, quantCols: Q, groups: G } = this.layout;
    const gw = Q / G;
    const tail = W - Q;
    const bf = this.dtype === 'bf16';
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const src = (b * T + t) * W;
        const slot = b * this.capacity + P + t;
        if (this.dtype !== 'int8') {
          for (let j = 0; j < W; j++) this.half![slot * W + j] = bf ? bf16Bits(rows[src + j]!) : f16Bits(rows[src + j]!);
          continue;
        }
        for (let g = 0; g < G; g++) this.scales![slot * G + g] = quantizeGroup(rows, src + g * gw, gw, this.q!, slot * Q + g * gw);
        for (let j = 0; j < tail; j++) this.half![slot * tail + j] = bf16Bits(rows[src + Q + j]!);
      }
    }
  }

  /** Dequantise positions 0..len−1 of every batch row into out (B, S, W) (positions ≥ len are left as they are). */
  read(out: Float32Array | Float64Array, len: number): void {
    const { width: W, quantCols: Q, groups: G } = this.layout;
    const gw = Q / G;
    const tail = W - Q;
    const bf = this.dtype === 'bf16';
    for (let b = 0; b < this.batch; b++) {
      for (let p = 0; p < len; p++) {
        const slot = b * this.capacity + p;
        const dst = slot * W;
        if (this.dtype !== 'int8') {
          for (let j = 0; j < W; j++) out[dst + j] = halfToNumber(this.half![slot * W + j]!, bf);
          continue;
        }
        for (let g = 0; g < G; g++) {
          const s = this.scales![slot * G + g]!;
          for (let j = 0; j < gw; j++) out[dst + g * gw + j] = this.q![slot * Q + g * gw + j]! * s;
        }
        for (let j = 0; j < tail; j++) out[dst + Q + j] = halfToNumber(this.half![slot * tail + j]!, true);
      }
    }
  }
}

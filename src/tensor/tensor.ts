// Tensor: a shape over a Storage (tensor/storage.ts) that a backend's pool owns, with a dtype (f64, f32, bf16, f16).
// The engine layer: it knows nothing about models.
// Host access is explicit: `data` gives the values of a host f32/f64 tensor (no copy; tests, io and small host logic
// read it), `halfBits()` the raw 16-bit patterns of a host bf16/f16 tensor, and `toHost()` values of any host tensor
// (half widened to a fresh Float32Array). A device tensor is read with its backend's download().

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './half.js';
import {
  STORAGES, Storage, allocHost, arrayFits, isHalf, unreachable,
  type DType, type FloatArray, type HalfDType, type HostArray,
} from './storage.js';

export type { DType, FloatArray, HalfDType, HostArray } from './storage.js';
/** Values of a host f32/f64 tensor (the type of `Tensor.data`). */
export type Data = FloatArray;

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The dtype a host array holds values of (Uint16Array is ambiguous: bf16 or f16, say which). */
export function dtypeOf(data: FloatArray): 'f32' | 'f64' {
  return data instanceof Float64Array ? 'f64' : 'f32';
}

/** A zeroed host array for n elements (charged to no pool until a Tensor wraps it). */
export function allocData(dtype: DType, n: number): HostArray {
  return allocHost(dtype, n);
}

/** Host values of `src` (any host dtype) converted to `dtype` (a fresh array). */
function convertHost(src: HostArray, from: DType, to: DType): HostArray {
  const f32 = (): Float32Array => {
    switch (from) {
      case 'bf16':
        return bf16ToF32(src as Uint16Array);
      case 'f16':
        return f16ToF32(src as Uint16Array);
      case 'f32':
        return (src as Float32Array).slice();
      case 'f64':
        return Float32Array.from(src as Float64Array);
      default:
        return unreachable(from, 'dtype');
    }
  };
  switch (to) {
    case 'f64':
      return isHalf(from) ? Float64Array.from(f32()) : Float64Array.from(src as FloatArray);
    case 'f32':
      return f32();
    case 'bf16':
      return f32ToBf16(from === 'f32' ? (src as Float32Array) : f32());
    case 'f16':
      return f32ToF16(from === 'f32' ? (src as Float32Array) : f32());
    default:
      return unreachable(to, 'dtype');
  }
}

export class Tensor {
  readonly shape: readonly number[];
  readonly storage: Storage;

  /**
   * A tensor over `data`: a host array (adopted, not copied; a new storage charged to the current pool) or an
   * existing Storage (a view: same buffer). A Uint16Array needs `dtype` 'bf16' or 'f16'.
   */
  constructor(shape: readonly number[], data: HostArray | Storage, dtype?: DType) {
    const n = sizeOf(shape);
    if (data instanceof Storage) {
      if (data.length !== n) throw new Error(`Tensor: shape [${shape.join(', ')}] needs ${n} values, storage holds ${data.length}`);
      this.storage = data;
    } else {
      if (n !== data.length) throw new Error(`Tensor: shape [${shape.join(', ')}] needs ${n} values, got ${data.length}`);
      const dt = dtype ?? (data instanceof Uint16Array ? undefined : dtypeOf(data));
      if (!dt || !arrayFits(data, dt)) {
        throw new Error(`Tensor: a ${data.constructor.name} cannot hold ${dt ?? 'values without a dtype (bf16 or f16)'}`);
      }
      this.storage = new Storage(dt, n, data);
    }
    this.shape = shape.slice();
  }

  /** A bf16/f16 tensor over raw 16-bit patterns (adopted). */
  static half(shape: readonly number[], dtype: HalfDType, bits: Uint16Array): Tensor {
    return new Tensor(shape, bits, dtype);
  }

  [STORAGES](): Storage[] {
    return [this.storage];
  }

  get dtype(): DType {
    return this.storage.dtype;
  }

  get size(): number {
    return this.storage.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.storage.disposed;
  }

  /** Values of a host f32/f64 tensor, no copy. Throws for bf16/f16 (halfBits, toHost) and device tensors. */
  get data(): FloatArray {
    const h = this.storage.host();
    if (h instanceof Uint16Array) {
      throw new Error(`Tensor.data: this tensor is ${this.dtype}; read it with toHost() (f32 copy) or halfBits()`);
    }
    return h;
  }

  /** Raw 16-bit patterns of a host bf16/f16 tensor, no copy. */
  halfBits(): Uint16Array {
    const h = this.storage.host();
    if (!(h instanceof Uint16Array)) throw new Error(`Tensor.halfBits: this tensor is ${this.dtype}, not bf16/f16`);
    return h;
  }

  /** Values of a host tensor: f32/f64 as stored (no copy), bf16/f16 widened exactly into a fresh Float32Array. */
  toHost(): FloatArray {
    const h = this.storage.host();
    return h instanceof Uint16Array ? (convertHost(h, this.dtype, 'f32') as Float32Array) : h;
  }

  /** Values as a Float32Array: an f32 tensor's own array (no copy), else a converted copy (f64 rounds). */
  toF32(): Float32Array {
    const h = this.toHost();
    return h instanceof Float32Array ? h : Float32Array.from(h);
  }

  /** Size of one axis, negative indices from the end. */
  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new Error(`Tensor.dim(${i}) out of range for shape [${this.shape.join(', ')}]`);
    return d;
  }

  /** Same storage, new shape (row-major reinterpretation, no copy). */
  reshape(shape: readonly number[]): Tensor {
    const infer = shape.indexOf(-1);
    if (infer >= 0) {
      const known = shape.reduce((a, d, i) => (i === infer ? a : a * d), 1);
      const s = shape.slice();
      s[infer] = this.size / known;
      return new Tensor(s, this.storage);
    }
    return new Tensor(shape, this.storage);
  }

  /** Release the storage (shared by every view of it). Later reads throw. */
  dispose(): void {
    this.storage.dispose();
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return new Tensor(shape, allocHost(dtype, sizeOf(shape)), dtype);
  }

  static fill(shape: readonly number[], value: number, dtype: 'f32' | 'f64' = 'f32'): Tensor {
    const t = Tensor.zeros(shape, dtype);
    t.data.fill(value);
    return t;
  }

  /** A tensor of `values` in dtype (bf16/f16 round to nearest even). */
  static from(shape: readonly number[], values: ArrayLike<number>, dtype: DType = 'f32'): Tensor {
    if (isHalf(dtype)) return new Tensor(shape, convertHost(Float32Array.from(values), 'f32', dtype), dtype);
    const d = allocHost(dtype, values.length) as FloatArray;
    d.set(values);
    return new Tensor(shape, d);
  }

  /** Uniform in [lo, hi) from a seeded generator. */
  static rand(shape: readonly number[], rng: () => number, lo = -1, hi = 1, dtype: DType = 'f32'): Tensor {
    if (isHalf(dtype)) {
      const t = Tensor.rand(shape, rng, lo, hi, 'f32');
      const h = t.to(dtype);
      t.dispose();
      return h;
    }
    const t = Tensor.zeros(shape, dtype);
    const d = t.data;
    for (let i = 0; i < t.size; i++) d[i] = lo + (hi - lo) * rng();
    return t;
  }

  /** A copy in a new storage (same dtype). */
  clone(): Tensor {
    return new Tensor(this.shape, this.storage.host().slice(), this.dtype);
  }

  /** This tensor in `dtype`: itself when it already is, else a converted copy (to bf16/f16 rounds to nearest even). */
  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    return new Tensor(this.shape, convertHost(this.storage.host(), this.dtype, dtype), dtype);
  }

  /** Element at a multi-index (tests and small host-side logic only). */
  get(...idx: number[]): number {
    let off = 0;
    for (let i = 0; i < idx.length; i++) off = off * this.shape[i]! + idx[i]!;
    const h = this.storage.host();
    if (h instanceof Uint16Array) return convertHost(h.subarray(off, off + 1), this.dtype, 'f32')[0]!;
    return h[off]!;
  }
}

/** Relative error ‖a−b‖/‖b‖ (the tolerance measure used in every test). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relError: lengths ${a.length} and ${b.length} differ`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

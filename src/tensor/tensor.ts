// Tensor: a shape and a dense row-major host buffer. The engine layer: it knows nothing about models.
// dtype f32 is the working precision of the cpu backend; f64 is used by the ref backend for gradient checks.

export type DType = 'f32' | 'f64';
export type Data = Float32Array | Float64Array;

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function dtypeOf(data: Data): DType {
  return data instanceof Float64Array ? 'f64' : 'f32';
}

export function allocData(dtype: DType, n: number): Data {
  return dtype === 'f64' ? new Float64Array(n) : new Float32Array(n);
}

export class Tensor {
  readonly shape: readonly number[];
  readonly data: Data;

  constructor(shape: readonly number[], data: Data) {
    if (sizeOf(shape) !== data.length) {
      throw new Error(`Tensor: shape [${shape.join(', ')}] needs ${sizeOf(shape)} values, got ${data.length}`);
    }
    this.shape = shape.slice();
    this.data = data;
  }

  get dtype(): DType {
    return dtypeOf(this.data);
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Size of one axis, negative indices from the end. */
  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new Error(`Tensor.dim(${i}) out of range for shape [${this.shape.join(', ')}]`);
    return d;
  }

  /** Same buffer, new shape (row-major reinterpretation, no copy). */
  reshape(shape: readonly number[]): Tensor {
    const infer = shape.indexOf(-1);
    if (infer >= 0) {
      const known = shape.reduce((a, d, i) => (i === infer ? a : a * d), 1);
      const s = shape.slice();
      s[infer] = this.size / known;
      return new Tensor(s, this.data);
    }
    return new Tensor(shape, this.data);
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return new Tensor(shape, allocData(dtype, sizeOf(shape)));
  }

  static fill(shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
    const t = Tensor.zeros(shape, dtype);
    t.data.fill(value);
    return t;
  }

  static from(shape: readonly number[], values: ArrayLike<number>, dtype: DType = 'f32'): Tensor {
    const d = allocData(dtype, values.length);
    d.set(values);
    return new Tensor(shape, d);
  }

  /** Uniform in [lo, hi) from a seeded generator. */
  static rand(shape: readonly number[], rng: () => number, lo = -1, hi = 1, dtype: DType = 'f32'): Tensor {
    const t = Tensor.zeros(shape, dtype);
    for (let i = 0; i < t.size; i++) t.data[i] = lo + (hi - lo) * rng();
    return t;
  }

  clone(): Tensor {
    return new Tensor(this.shape, this.data.slice());
  }

  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    const d = allocData(dtype, this.size);
    d.set(this.data);
    return new Tensor(this.shape, d);
  }

  /** Element at a multi-index (tests and small host-side logic only). */
  get(...idx: number[]): number {
    let off = 0;
    for (let i = 0; i < idx.length; i++) off = off * this.shape[i]! + idx[i]!;
    return this.data[off]!;
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

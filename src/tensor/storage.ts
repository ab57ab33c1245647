// Storage: the memory behind a tensor, owned by a backend's buffer pool, with a dtype. Live buffers are counted per
// pool (count and bytes); dispose() releases one, tidy(fn) releases every buffer made inside fn that fn does not
// return. Host backends (ref, cpu) keep storage in JS typed arrays (Float64Array, Float32Array, Uint16Array for the
// half formats); a device backend's storage holds its own handle and no host array (reads go through download()).
// Buffers made outside any backend op (Tensor.zeros in model code, tensors read from files) belong to `hostPool`.

/** Element types: f64 (the ref backend's oracle precision), f32 (working precision), and the 16-bit formats in
 *  which weights (and later caches) are stored: bf16 (top half of an f32) and IEEE f16. */
export type DType = 'f64' | 'f32' | 'bf16' | 'f16';
export type HalfDType = 'bf16' | 'f16';
export type FloatArray = Float32Array | Float64Array;
/** What a host storage holds: values (f32/f64) or raw 16-bit patterns (bf16/f16). */
export type HostArray = Float64Array | Float32Array | Uint16Array;

export const DTYPES = ['f64', 'f32', 'bf16', 'f16'] as const satisfies readonly DType[];

/** Unreachable default of a switch over a closed union: a missing case is a compile error. */
export function unreachable(x: never, what: string): never {
  throw new Error(`unknown ${what} ${String(x)}`);
}

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f64':
      return 8;
    case 'f32':
      return 4;
    case 'bf16':
    case 'f16':
      return 2;
    default:
      return unreachable(dtype, 'dtype');
  }
}

export function isHalf(dtype: DType): dtype is HalfDType {
  switch (dtype) {
    case 'bf16':
    case 'f16':
      return true;
    case 'f32':
    case 'f64':
      return false;
    default:
      return unreachable(dtype, 'dtype');
  }
}

// Reuse of op outputs. `new Float32Array(n)` costs ~3 µs once n passes V8's in-heap limit (an off-heap backing store,
// external-memory accounting, more GC work), the time of the whole kernel for a decode step's small ops: a 30-layer
// decode step makes ~600 such outputs. A host backend allocates its op outputs with recycledF32 and marks their
// storages recyclable; when such a storage is disposed and its array was never handed out (host(), and so
// Tensor.data / toHost(), marks it lent: the caller may keep the array), the array goes to a free list by length
// and the next output of that length reuses it, zeroed. Kernels read arrays through kernelHost(), which lends
// nothing: the addon never keeps an array past its call.

/** Free arrays by length; their total bytes stay under FREE_MAX_BYTES, and arrays over FREE_MAX_LEN are never kept. */
const freeF32 = new Map<number, Float32Array[]>();
let freeBytes = 0;
const FREE_MAX_BYTES = 64 << 20;
const FREE_MAX_LEN = 1 << 20;

/** A zeroed Float32Array of n elements: a recycled one when a disposed recyclable storage left one of that length. */
export function recycledF32(n: number): Float32Array {
  const a = freeF32.get(n)?.pop();
  if (!a) return new Float32Array(n);
  freeBytes -= a.byteLength;
  a.fill(0);
  return a;
}

function release(a: HostArray): void {
  if (!(a instanceof Float32Array) || a.length > FREE_MAX_LEN || a.length === 0 || freeBytes + a.byteLength > FREE_MAX_BYTES) return;
  let list = freeF32.get(a.length);
  if (!list) freeF32.set(a.length, (list = []));
  list.push(a);
  freeBytes += a.byteLength;
}

/** A zeroed host array for n elements of dtype. */
export function allocHost(dtype: DType, n: number): HostArray {
  switch (dtype) {
    case 'f64':
      return new Float64Array(n);
    case 'f32':
      return new Float32Array(n);
    case 'bf16':
    case 'f16':
      return new Uint16Array(n);
    default:
      return unreachable(dtype, 'dtype');
  }
}

/** Whether a host array can hold `dtype` (Uint16Array ↔ bf16/f16). */
export function arrayFits(a: HostArray, dtype: DType): boolean {
  switch (dtype) {
    case 'f64':
      return a instanceof Float64Array;
    case 'f32':
      return a instanceof Float32Array;
    case 'bf16':
    case 'f16':
      return a instanceof Uint16Array;
    default:
      return unreachable(dtype, 'dtype');
  }
}

export interface MemoryStats {
  /** Pool name: the backend's ('ref', 'cpu', …) or 'host' for tensors made outside backend ops. */
  name: string;
  /** Live (not disposed) buffers. */
  buffers: number;
  /** Bytes held by live buffers. */
  bytes: number;
  /** Highest `bytes` seen since the pool was made (or resetPeak). */
  peakBytes: number;
}

/** Live-buffer accounting of one owner. Every Storage registers with one pool for its whole life. */
export class BufferPool {
  buffers = 0;
  bytes = 0;
  peakBytes = 0;

  constructor(
    readonly name: string,
    /** Whether storages of this pool are host typed arrays (readable by every host backend). */
    readonly host: boolean,
  ) {
    pools.push(this);
  }

  stats(): MemoryStats {
    return { name: this.name, buffers: this.buffers, bytes: this.bytes, peakBytes: this.peakBytes };
  }

  resetPeak(): void {
    this.peakBytes = this.bytes;
  }
}

const pools: BufferPool[] = [];

/** Owner of buffers made outside any backend op. */
export const hostPool = new BufferPool('host', true);

/** Every pool made so far (host first), for leak checks and reports. */
export function memoryStats(): MemoryStats[] {
  return pools.map((p) => p.stats());
}

/** Live buffers and bytes summed over every pool. */
export function liveBuffers(): { buffers: number; bytes: number } {
  let buffers = 0;
  let bytes = 0;
  for (const p of pools) {
    buffers += p.buffers;
    bytes += p.bytes;
  }
  return { buffers, bytes };
}

/** The pool new host storages are charged to: a backend sets it around its kernels (withPool). */
let currentPool: BufferPool = hostPool;

/** Run fn with new host storages charged to `pool` (a backend wraps its op dispatch in this). */
export function withPool<T>(pool: BufferPool, fn: () => T): T {
  const prev = currentPool;
  currentPool = pool;
  try {
    return fn();
  } finally {
    currentPool = prev;
  }
}

/** Open tidy scopes, innermost last: each collects the storages made while it is open. */
const scopes: Set<Storage>[] = [];

export class Storage {
  readonly dtype: DType;
  /** Number of elements. */
  readonly length: number;
  readonly pool: BufferPool;
  /** Excluded from every tidy scope (keep()). */
  kept = false;
  private hostArray: HostArray | null;
  /** The array came from recycledF32 and only this storage refers to it (see recycledF32). */
  private recyclable = false;
  /** host() handed the array out: it is never recycled. */
  private lent = false;
  private live = true;
  /** A device backend's own reference to its buffer (null for host storage). */
  readonly handle: unknown;

  /** Host storage over `host` (adopted, not copied), charged to `pool` (default: the current pool). */
  constructor(dtype: DType, length: number, host: HostArray | null, pool: BufferPool = currentPool, handle: unknown = null) {
    if (host && (!arrayFits(host, dtype) || host.length !== length)) {
      throw new Error(`Storage: a ${host.constructor.name} of ${host.length} cannot hold ${length} ${dtype} values`);
    }
    if (!host && pool.host) throw new Error(`Storage: host pool ${pool.name} needs a host array`);
    this.dtype = dtype;
    this.length = length;
    this.pool = pool;
    this.hostArray = host;
    this.handle = handle;
    pool.buffers++;
    pool.bytes += this.byteLength;
    if (pool.bytes > pool.peakBytes) pool.peakBytes = pool.bytes;
    scopes[scopes.length - 1]?.add(this);
  }

  get byteLength(): number {
    return this.length * bytesPerElement(this.dtype);
  }

  get disposed(): boolean {
    return !this.live;
  }

  /** Whether the values are in host memory (readable with host()). */
  get isHost(): boolean {
    return this.pool.host;
  }

  /** The host array (throws when disposed or on a device). The caller may keep it: it is never recycled. */
  host(): HostArray {
    const h = this.kernelHost();
    this.lent = true;
    return h;
  }

  /** The host array for one kernel call that does not keep it past the call (host backends' op arguments); unlike
   *  host() it leaves a recyclable array recyclable. */
  kernelHost(): HostArray {
    if (!this.live) throw new Error(`a ${this.dtype} tensor of ${this.length} elements was used after dispose()`);
    if (!this.hostArray) throw new Error(`a ${this.dtype} tensor lives on ${this.pool.name}: download() it to read it on the host`);
    return this.hostArray;
  }

  /** Declare this storage's array as made by recycledF32 for it alone (a host backend's op output), so dispose()
   *  may recycle it unless host() lent it out. Returns this. */
  markRecyclable(): this {
    this.recyclable = this.hostArray instanceof Float32Array;
    return this;
  }

  /** Release the buffer (idempotent). Later reads throw. */
  dispose(): void {
    if (!this.live) return;
    this.live = false;
    if (this.recyclable && !this.lent && this.hostArray) release(this.hostArray);
    this.hostArray = null;
    this.pool.buffers--;
    this.pool.bytes -= this.byteLength;
  }
}

/** Objects that hold storages (Tensor) expose them under this key, so tidy can find them in a result. */
export const STORAGES: unique symbol = Symbol('storages');
interface HasStorages {
  [STORAGES](): Storage[];
}

function hasStorages(x: object): x is HasStorages {
  return typeof (x as Partial<HasStorages>)[STORAGES] === 'function';
}

/** Storages reachable from a value: tensors, and arrays, Maps, Sets and objects (class instances such as Var
 *  included) holding them, walked through their own enumerable fields. */
export function reachableStorages(value: unknown, out = new Set<Storage>(), seen = new Set<object>()): Set<Storage> {
  if (value === null || typeof value !== 'object' || seen.has(value)) return out;
  seen.add(value);
  if (hasStorages(value)) {
    for (const s of value[STORAGES]()) out.add(s);
    return out;
  }
  if (ArrayBuffer.isView(value)) return out;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      reachableStorages(k, out, seen);
      reachableStorages(v, out, seen);
    }
  } else if (value instanceof Set || Array.isArray(value)) {
    for (const v of value) reachableStorages(v, out, seen);
  } else {
    for (const v of Object.values(value)) reachableStorages(v, out, seen);
  }
  return out;
}

/**
 * Run fn in a scope: every storage made inside it (by any backend or pool) and not reachable from its result is
 * disposed when it returns or throws; the returned ones pass to the enclosing scope. Storages made before the
 * scope (weights, caches, optimizer state) are never touched, and in-place writes to them are fine. A tensor made
 * inside and stored elsewhere (a field of a long-lived object) must be returned or keep()-ed.
 * fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Storage>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    closeScope(scope, new Set());
    throw e;
  }
  if (result instanceof Promise) {
    closeScope(scope, new Set());
    throw new Error('tidy: fn must be synchronous (it returned a Promise)');
  }
  closeScope(scope, reachableStorages(result));
  return result;
}

function closeScope(scope: Set<Storage>, keepSet: Set<Storage>): void {
  if (scopes[scopes.length - 1] !== scope) throw new Error('tidy: scopes closed out of order');
  scopes.pop();
  const parent = scopes[scopes.length - 1];
  for (const s of scope) {
    if (s.kept || keepSet.has(s)) parent?.add(s);
    else s.dispose();
  }
}

/** Exempt a value's storages from every tidy scope (they live until disposed explicitly). Returns the value. */
export function keep<T>(value: T): T {
  for (const s of reachableStorages(value)) {
    s.kept = true;
    for (const sc of scopes) sc.delete(s);
  }
  return value;
}

/** Dispose every storage reachable from a value (tensors, Vars, arrays, Maps, objects). */
export function disposeAll(value: unknown): void {
  for (const s of reachableStorages(value)) s.dispose();
}

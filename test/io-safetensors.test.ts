// safetensors: bitwise round trips, F16/BF16 rounding (nearest, ties to even) and a seeded set of
// malformed files, each rejected with a message naming the file and the field.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../src/tensor/rng.js';
import { UserError } from '../src/errors.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../src/io/safetensors.js';
import { bf16ToF32, f16ToF32, f32BitsToF16, f32ToBf16, f32ToF16 } from '../src/io/dtype.js';
import { tempDir } from './helpers.js';

const bitsEqual = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function randomF32(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng() * 2 - 1) * 10 ** Math.floor(rng() * 12 - 6);
  return a;
}

test('F32 round trip is bitwise, shapes and metadata preserved, data 8-byte aligned', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'a.safetensors');
    const special = Float32Array.of(0, -0, Infinity, -Infinity, NaN, 1e-45, -3.4028234663852886e38);
    const entries = [
      { name: 'w', shape: [3, 5], data: randomF32(15, 1) },
      { name: 'b', shape: [7], data: special },
      { name: 'odd.name/x', shape: [1, 2, 3], data: randomF32(6, 2) },
      { name: 'scalar', shape: [], data: Float32Array.of(42.5) },
      { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
    ];
    writeSafetensors(file, entries, { format: 'pt', note: 'hello' });
    const { tensors, metadata } = readSafetensors(file);
    assert.deepEqual(metadata, { format: 'pt', note: 'hello' });
    assert.equal(tensors.size, entries.length);
    for (const e of entries) {
      const t = tensors.get(e.name);
      assert.ok(t, e.name);
      assert.equal(t.dtype, 'F32');
      assert.deepEqual(t.shape, e.shape);
      assert.ok(bitsEqual(t.data, e.data), `${e.name} differs`);
    }
    const n = Number(readFileSync(file).readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    assert.deepEqual(readSafetensorsHeader(file).entries.map((e) => e.name), entries.map((e) => e.name));
    assert.deepEqual(readdirSync(dir), ['a.safetensors'], 'no temporary file left behind');
  } finally {
    cleanup();
  }
});

/** Value nearest to x among F16 or BF16 values, ties to the even bit pattern: a slow, obviously right reference. */
function nearestRef(x: number, decode: (h: number) => number, candidates: number[]): number {
  let best = candidates[0]!;
  let bestErr = Infinity;
  for (const h of candidates) {
    const v = decode(h);
    const err = Math.abs(v - x);
    if (err < bestErr || (err === bestErr && (h & 1) === 0)) {
      best = h;
      bestErr = err;
    }
  }
  return best;
}

test('BF16 conversion rounds to nearest even and widens exactly', () => {
  const rng = mulberry32(7);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  // Rounding treats +inf as the next value after the largest finite one (2^128).
  const bfVal = (h: number): number => ((h & 0x7fff) === 0x7f80 ? 2 ** 128 : bf16ToF32(Uint16Array.of(h))[0]!);
  for (let k = 0; k < 3000; k++) {
    u[0] = Math.floor(rng() * 0x7f7fffff) | (rng() < 0.5 ? 0x80000000 : 0); // finite values of every magnitude
    if (k % 3 === 0) u[0] = (u[0] & 0xffff0000) | 0x8000; // exact ties
    const x = f[0]!;
    const got = f32ToBf16(f)[0]!;
    const top = u[0] >>> 16;
    const want = nearestRef(x, bfVal, [top, top + 1].filter((h) => (h & 0x7fff) <= 0x7f80));
    assert.equal(got, want, `x=${x} bits=${u[0].toString(16)}`);
  }
  assert.equal(f32ToBf16(Float32Array.of(1 + 2 ** -8))[0], 0x3f80, 'tie to even (down)');
  assert.equal(f32ToBf16(Float32Array.of(1 + 3 * 2 ** -8))[0], 0x3f82, 'tie to even (up)');
  assert.equal(f32ToBf16(Float32Array.of(3.4028234663852886e38))[0], 0x7f80, 'max f32 overflows to inf');
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.of(NaN)))[0]!));
});

test('F16 conversion rounds to nearest even (normals, subnormals, overflow) and widens exactly', () => {
  const rng = mulberry32(11);
  const f16Val = (h: number): number => (h === 0x7c00 ? 65536 : f16ToF32(Uint16Array.of(h))[0]!);
  // Every F16 value survives f16 → f32 → f16.
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16(f16ToF32(all));
  for (let h = 0; h < 65536; h++) {
    const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (!isNaN16) assert.equal(back[h], h, `F16 ${h.toString(16)}`);
  }
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let k = 0; k < 3000; k++) {
    const mag = 2 ** (rng() * 44 - 28); // 2^-28 .. 2^16: zero, subnormal, normal, overflow
    f[0] = (rng() < 0.5 ? -1 : 1) * mag;
    if (k % 4 === 0) {
      // an exact midpoint between two neighbouring F16 values
      const h = Math.floor(rng() * 0x7bff);
      f[0] = (f16Val(h) + f16Val(h + 1)) / 2;
    }
    const x = f[0];
    const got = f32BitsToF16(u[0]!);
    let want: number;
    if (Math.abs(x) >= 65520) want = (x < 0 ? 0x8000 : 0) | 0x7c00;
    else {
      const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
      // neighbours of |x| in F16: search by bisection over the ordered positive patterns
      let lo = 0;
      let hi = 0x7bff;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (f16Val(mid) <= Math.abs(x)) lo = mid;
        else hi = mid - 1;
      }
      want = sign | nearestRef(Math.abs(x), f16Val, [lo, Math.min(lo + 1, 0x7c00)]);
    }
    assert.equal(got, want, `x=${x}`);
  }
  assert.equal(f32BitsToF16(new Uint32Array(Float32Array.of(65504).buffer)[0]!), 0x7bff);
  assert.equal(f32BitsToF16(new Uint32Array(Float32Array.of(2 ** -25).buffer)[0]!), 0, '2^-25 ties to even zero');
  assert.equal(f32BitsToF16(new Uint32Array(Float32Array.of(3 * 2 ** -25).buffer)[0]!), 2, '3·2^-25 ties to even 2');
});

test('F16/BF16 files: stored rounded, read back widened, dtype reported', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'h.safetensors');
    const a = randomF32(37, 3);
    writeSafetensors(file, [
      { name: 'a16', shape: [37], data: a, dtype: 'F16' },
      { name: 'abf', shape: [37], data: a, dtype: 'BF16' },
    ]);
    const { tensors } = readSafetensors(file);
    assert.equal(tensors.get('a16')!.dtype, 'F16');
    assert.equal(tensors.get('abf')!.dtype, 'BF16');
    assert.ok(bitsEqual(tensors.get('a16')!.data, f16ToF32(f32ToF16(a))));
    assert.ok(bitsEqual(tensors.get('abf')!.data, bf16ToF32(f32ToBf16(a))));
    // Re-writing the widened values in the same dtype is lossless.
    writeSafetensors(file, [{ name: 'x', shape: [37], data: tensors.get('abf')!.data, dtype: 'BF16' }]);
    assert.ok(bitsEqual(readSafetensors(file).tensors.get('x')!.data, tensors.get('abf')!.data));
  } finally {
    cleanup();
  }
});

/** Build a raw safetensors file from a header object (or text) and a data area. */
function rawFile(header: unknown, data: Uint8Array, lengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

test('malformed files are rejected naming the file and the field', () => {
  const { dir, cleanup } = tempDir();
  try {
    const rng = mulberry32(2024);
    const data = new Uint8Array(64).map(() => Math.floor(rng() * 256));
    const ok = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F16', shape: [2, 4], data_offsets: [16, 32] } };
    const good = rawFile(ok, data.subarray(0, 32));
    const cases: { name: string; bytes: Buffer; field: RegExp }[] = [
      { name: 'empty', bytes: Buffer.alloc(0), field: /header length/ },
      { name: 'truncated-length', bytes: good.subarray(0, 5), field: /header length/ },
      { name: 'header-past-end', bytes: rawFile(ok, data.subarray(0, 32), 1_000_000n), field: /header length/ },
      { name: 'truncated-header', bytes: good.subarray(0, 20), field: /header length/ },
      { name: 'bad-json', bytes: rawFile('{"a": {"dtype": "F32",', data), field: /header: expected valid JSON/ },
      { name: 'not-object', bytes: rawFile('[1, 2]', data), field: /header: expected a JSON object/ },
      { name: 'unknown-dtype', bytes: rawFile({ a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, data), field: /tensor "a"\.dtype/ },
      { name: 'bad-shape', bytes: rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, data), field: /tensor "a"\.shape/ },
      { name: 'offsets-outside', bytes: rawFile({ a: { dtype: 'F32', shape: [32], data_offsets: [0, 128] } }, data), field: /tensor "a"\.data_offsets.*outside/ },
      { name: 'offsets-reversed', bytes: rawFile({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data), field: /tensor "a"\.data_offsets/ },
      { name: 'size-mismatch', bytes: rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, data), field: /tensor "a"\.data_offsets.*needs 12/ },
      {
        name: 'overlap',
        bytes: rawFile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, data),
        field: /tensor "b"\.data_offsets.*overlaps tensor "a"/,
      },
      {
        name: 'duplicate-name',
        bytes: rawFile('{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}', data),
        field: /tensor "a": name appears more than once/,
      },
      { name: 'bad-metadata', bytes: rawFile({ __metadata__: { n: 3 } }, data), field: /__metadata__\.n/ },
    ];
    for (const c of cases) {
      const file = join(dir, `${c.name}.safetensors`);
      writeFileSync(file, c.bytes);
      for (const read of [readSafetensors, readSafetensorsHeader]) {
        assert.throws(
          () => read(file),
          (e: unknown) => e instanceof UserError && e.message.startsWith(`${file}: `) && c.field.test(e.message),
          `${c.name}: expected an error naming ${file} and ${c.field}`,
        );
      }
    }
    // The well-formed sibling of those cases loads.
    writeFileSync(join(dir, 'good.safetensors'), good);
    assert.equal(readSafetensors(join(dir, 'good.safetensors')).tensors.size, 2);
    assert.throws(() => readSafetensors(join(dir, 'missing.safetensors')), /file not found/);
  } finally {
    cleanup();
  }
});

test('a failed write leaves no partial file', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'x.safetensors');
    assert.throws(() => writeSafetensors(file, [{ name: 'a', shape: [3], data: new Float32Array(2) }]), /needs 3 values/);
    assert.throws(() => writeSafetensors(file, [{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]), /twice/);
    assert.equal(existsSync(file), false);
    assert.deepEqual(readdirSync(dir), []);
    // A write into a missing directory fails before anything is created.
    assert.throws(() => writeSafetensors(join(dir, 'no', 'x.safetensors'), [{ name: 'a', shape: [1], data: new Float32Array(1) }]));
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    cleanup();
  }
});

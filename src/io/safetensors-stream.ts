// A safetensors file written tensor by tensor, for outputs larger than memory (the streamed conversion). The header
// comes first in the file but must list every shape and offset; some shapes are known only once their tensor is made
// (an energy plan picks each layer's kv rank from its spectrum). So the writer is given every tensor up front with an
// upper bound on its shape, reserves the header that bound needs, writes the data as it comes, and at the end writes
// the real header into the reserved room padded with spaces (the format allows trailing whitespace in the header).
// When every bound is exact the file is byte for byte what writeSafetensors writes for the same tensors.

import { closeSync, openSync, writeSync } from 'node:fs';
import { sizeOf } from '../tensor/tensor.js';
import { isFsError } from '../errors.js';
import { assertLittleEndianHost } from './binfile.js';
import { bytesPerElement } from './dtype.js';
import { safetensorsHeader, type SafetensorsHeaderEntry } from './safetensors.js';

export class SafetensorsStreamWriter {
  private readonly fd: number;
  private readonly headerBytes: number;
  private readonly written: SafetensorsHeaderEntry[] = [];
  private position: number;
  /** The tensor being written: its entry and the bytes it still needs. */
  private current: { entry: SafetensorsHeaderEntry; left: number } | null = null;
  private closed = false;

  /**
   * Open `file` (the caller's temporary name: this writer does not rename) for the tensors `planned`, in this order,
   * each shape an upper bound per dimension on the shape it will be written with.
   */
  constructor(readonly file: string, private readonly planned: readonly SafetensorsHeaderEntry[], private readonly metadata?: Record<string, string>) {
    assertLittleEndianHost();
    // Digits never shrink as a number grows, so the header of the bounds is at least as long as the real one.
    this.headerBytes = safetensorsHeader(planned, metadata).length;
    this.fd = openSync(file, 'w');
    this.position = this.headerBytes;
  }

  /** The next tensor is `name` with `shape` (within its bound); its bytes follow through write(). */
  begin(name: string, shape: readonly number[]): void {
    if (this.current) throw new Error(`SafetensorsStreamWriter: ${this.current.entry.name} is unfinished (${this.current.left} bytes short)`);
    const k = this.written.length;
    const plan = this.planned[k];
    if (!plan || plan.name !== name) throw new Error(`SafetensorsStreamWriter: expected tensor ${plan ? plan.name : '(none: all written)'} next, got ${name}`);
    if (shape.length !== plan.shape.length || shape.some((d, i) => !Number.isSafeInteger(d) || d < 0 || d > plan.shape[i]!)) {
      throw new Error(`SafetensorsStreamWriter: ${name}: shape [${shape.join(', ')}] exceeds the planned bound [${plan.shape.join(', ')}]`);
    }
    const entry = { name, shape: [...shape], dtype: plan.dtype };
    this.written.push(entry);
    this.current = { entry, left: sizeOf(shape) * bytesPerElement[plan.dtype] };
    if (this.current.left === 0) this.current = null;
  }

  /** The next bytes of the current tensor (little-endian, in the planned dtype). */
  write(bytes: Uint8Array): void {
    const c = this.current;
    if (!c) throw new Error('SafetensorsStreamWriter: write() outside a tensor');
    if (bytes.byteLength > c.left) throw new Error(`SafetensorsStreamWriter: ${c.entry.name}: ${bytes.byteLength} bytes given, ${c.left} expected`);
    this.writeAt(bytes, this.position);
    this.position += bytes.byteLength;
    c.left -= bytes.byteLength;
    if (c.left === 0) this.current = null;
  }

  /** The planned dtype of the next tensor (what write() must be given). */
  nextDtype(): SafetensorsHeaderEntry['dtype'] {
    const plan = this.planned[this.written.length];
    if (!plan) throw new Error('SafetensorsStreamWriter: every planned tensor is written');
    return plan.dtype;
  }

  /** Write the header over the reserved room and close; every planned tensor must be complete. */
  finish(): void {
    if (this.current) throw new Error(`SafetensorsStreamWriter: ${this.current.entry.name} is unfinished (${this.current.left} bytes short)`);
    if (this.written.length !== this.planned.length) {
      throw new Error(`SafetensorsStreamWriter: ${this.planned.length - this.written.length} planned tensors not written (next ${this.planned[this.written.length]!.name})`);
    }
    this.writeAt(safetensorsHeader(this.written, this.metadata, this.headerBytes), 0);
    this.closed = true;
    closeSync(this.fd);
  }

  /** Close without finishing (after a failure; the caller removes the file with its temporary directory). */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }

  private writeAt(bytes: Uint8Array, position: number): void {
    try {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), position + done);
    } catch (err) {
      // A failed write (full disk, file-size limit) carries no path: name the file being written.
      if (isFsError(err) && !err.path) err.path = this.file;
      throw err;
    }
  }
}

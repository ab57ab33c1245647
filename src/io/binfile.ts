// Positioned reads of binary files into freshly allocated (hence aligned) buffers: lets the loaders
// convert one tensor at a time, without readFileSync's 2 GiB limit or a whole-file copy in memory.

import { closeSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { UserError, isFsError, userFsError } from '../errors.js';
import { requireRegularFile } from './text.js';

/** The formats we read are little-endian and are viewed in place through typed arrays. */
export function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new UserError('this tool reads little-endian files through typed arrays and needs a little-endian machine');
}

/** An open file: size and exact positioned reads. Call close() when done (or use withFile). */
export class BinFile {
  readonly fd: number;
  readonly size: number;

  constructor(readonly path: string) {
    // Check the type before opening: opening a FIFO blocks until a writer appears, and a device has no size.
    requireRegularFile(path, path);
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw code === 'ENOENT' ? new UserError(`${path}: cannot open (file not found)`) : userFsError(e);
    }
    const st = fstatSync(this.fd);
    if (!st.isFile()) {
      closeSync(this.fd);
      throw new UserError(`${path}: not a regular file`);
    }
    this.size = st.size;
  }

  /** Exactly `length` bytes starting at `position` (the caller has checked the range). */
  read(position: number, length: number): Uint8Array {
    return this.readInto(position, new Uint8Array(length));
  }

  /** Fill `out` with the bytes starting at `position` (a reused buffer: no fresh pages per read); returns `out`. */
  readInto(position: number, out: Uint8Array): Uint8Array {
    const length = out.byteLength;
    let done = 0;
    while (done < length) {
      const chunk = Math.min(length - done, 1 << 30);
      const n = readSync(this.fd, out, done, chunk, position + done);
      if (n <= 0) throw new UserError(`${this.path}: unexpected end of file at byte ${position + done}`);
      done += n;
    }
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

export function withFile<T>(path: string, fn: (f: BinFile) => T): T {
  const f = new BinFile(path);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}

/** Write a file through `emit` under a temporary name, then rename it into place; on any error the temporary file is
 *  removed and nothing is left at `file` (the atomic-write rule of every writer in io/). */
export function writeFileAtomic(file: string, tmp: string, emit: (write: (bytes: Uint8Array) => void) => void): void {
  const fd = openSync(tmp, 'w');
  try {
    emit((bytes) => {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
    });
    closeSync(fd);
    renameSync(tmp, file);
  } catch (err) {
    // A failed write (full disk, file-size limit) carries no path: name the file being written.
    if (isFsError(err) && !err.path) err.path = file;
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* never created or already gone */
    }
    throw err;
  }
}

// Reading text inputs (corpora, held-out text, task files, JSON): only regular files, of a bounded size, in UTF-8.
// Binary data, UTF-16 and invalid UTF-8 are refused with the byte offset instead of being decoded into replacement
// characters and scored; a FIFO or a device (/dev/zero) is refused before it is opened, so nothing hangs or fills memory.

import { readFileSync, statSync } from 'node:fs';
import { UserError, userFsError } from '../errors.js';

/** Text inputs larger than this are refused (a corpus this size is a mistake for a CPU tool; split it). */
export const MAX_TEXT_BYTES = 1 << 30;

/** Stat `path` and require a regular file (no directory, FIFO, socket or device); `what` prefixes messages. */
export function requireRegularFile(path: string, what: string): number {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`${what}: file not found`);
    throw userFsError(e, what);
  }
  if (st.isDirectory()) throw new UserError(`${what}: is a directory, expected a file`);
  if (!st.isFile()) throw new UserError(`${what}: not a regular file (a FIFO, socket or device cannot be read as input)`);
  return st.size;
}

/** Offset of the first byte that is not part of valid UTF-8, or -1. */
export function invalidUtf8Offset(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [need, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [need, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [need, min] = [3, 0x10000];
    else return i;
    if (i + need >= n) return i;
    let cp = c & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** Decode bytes as UTF-8 text or say where they are not (`what` names the file in messages). */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new UserError(`${what}: UTF-16 text (byte-order mark at byte 0); expected UTF-8: convert it (iconv -f UTF-16 -t UTF-8)`);
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new UserError(`${what}: binary data (a NUL byte at byte ${nul}); expected UTF-8 text`);
  const bad = invalidUtf8Offset(bytes);
  if (bad >= 0) throw new UserError(`${what}: invalid UTF-8 at byte ${bad}; expected UTF-8 text`);
  const start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, bytes.byteLength - start).toString('utf8');
}

/** A UTF-8 text file, checked: regular, at most `maxBytes`, valid UTF-8. `what` defaults to the path (a CLI caller
 *  passes e.g. "--text FILE" so the message names the flag). */
export function readUtf8File(path: string, what = path, maxBytes = MAX_TEXT_BYTES): string {
  const size = requireRegularFile(path, what);
  if (size > maxBytes) throw new UserError(`${what}: ${size} bytes is more than the ${maxBytes}-byte limit for a text input`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw userFsError(e, what);
  }
  return decodeUtf8(bytes, what);
}

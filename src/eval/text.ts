// Evaluation text from a file, with an error naming the option that gave the file.

import { readUtf8File } from '../io/text.js';

/** The whole file as checked UTF-8 (io/text.ts: a regular file, bounded, valid UTF-8 or the byte offset where it is
 *  not); `field` names the option that gave it (for the error). */
export function readText(file: string, field = 'text'): string {
  return readUtf8File(file, `{${field}} ${file}`);
}

// Evaluation text from a file, with an error naming the option that gave the file.

import { readFileSync } from 'node:fs';
import { OptionError } from '../errors.js';

/** The whole file as UTF-8; `field` names the option that gave it (for the error). */
export function readText(file: string, field = 'text'): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new OptionError(field, file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

// Reading JSON inputs (config.json, tokenizer_config.json, index files) with field-level validation:
// every getter names the file and the field in its error, so a bad input says exactly where it is wrong.

import { existsSync } from 'node:fs';
import { readUtf8File } from './text.js';
import { UserError, formatError } from '../errors.js';

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A short, bounded rendering of a JSON value for error messages: at most `maxDepth` levels and `maxLen` characters
 * (a value nested 100,000 deep or megabytes long must not overflow the stack or flood the terminal).
 */
export function jsonPreview(v: unknown, maxLen = 80, maxDepth = 3): string {
  const render = (x: unknown, depth: number): string => {
    if (Array.isArray(x)) {
      if (depth >= maxDepth) return x.length ? '[…]' : '[]';
      const parts: string[] = [];
      let len = 0;
      for (const e of x) {
        const r = render(e, depth + 1);
        parts.push(r);
        len += r.length + 2;
        if (len > maxLen) {
          parts.push('…');
          break;
        }
      }
      return `[${parts.join(', ')}]`;
    }
    if (isObject(x)) {
      if (depth >= maxDepth) return Object.keys(x).length ? '{…}' : '{}';
      const parts: string[] = [];
      let len = 0;
      for (const [k, e] of Object.entries(x)) {
        const r = `${JSON.stringify(k)}: ${render(e, depth + 1)}`;
        parts.push(r);
        len += r.length + 2;
        if (len > maxLen) {
          parts.push('…');
          break;
        }
      }
      return `{${parts.join(', ')}}`;
    }
    return JSON.stringify(x) ?? String(x);
  };
  const s = render(v, 0);
  return s.length > maxLen ? s.slice(0, maxLen - 1) + '…' : s;
}

/** The non-blank lines of JSONL `lines`, each parsed, with "file:line" for messages; a malformed line is a UserError. */
export function parseJsonLines(lines: readonly string[], file: string): { value: unknown; where: string }[] {
  const out: { value: unknown; where: string }[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    try {
      out.push({ value: JSON.parse(line) as unknown, where });
    } catch (e) {
      throw new UserError(`${where}: not valid JSON (${(e as Error).message})`);
    }
  });
  return out;
}

/** Parse a JSON file; a missing, unreadable or non-UTF-8 file or bad JSON is a UserError naming the file. */
export function readJsonFile(file: string): unknown {
  if (!existsSync(file)) throw new UserError(`${file}: file not found`);
  const text = readUtf8File(file);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw formatError(file, '(whole file)', `valid JSON (${(e as Error).message})`);
  }
}

/** Parse a JSON file whose top level must be an object. */
export function readJsonObject(file: string): JsonObject {
  const v = readJsonFile(file);
  if (!isObject(v)) throw formatError(file, '(whole file)', 'a JSON object at the top level');
  return v;
}

/** Typed, validated access to the fields of one JSON object; `path` prefixes field names in errors. */
export class Fields {
  constructor(
    readonly file: string,
    readonly obj: JsonObject,
    readonly path = '',
  ) {}

  private name(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  /** Error for field `key`: "<file>: <path.key>: <expected>". */
  error(key: string, expected: string): UserError {
    return formatError(this.file, this.name(key), expected);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  private describe(v: unknown): string {
    return v === undefined ? 'missing' : `got ${jsonPreview(v)}`;
  }

  int(key: string, min = 1): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw this.error(key, `expected an integer ≥ ${min}, ${this.describe(v)}`);
    }
    return v;
  }

  optInt(key: string, fallback: number, min = 1): number {
    return this.has(key) ? this.int(key, min) : fallback;
  }

  /** A finite number > 0. */
  pos(key: string): number {
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw this.error(key, `expected a positive number, ${this.describe(v)}`);
    }
    return v;
  }

  optPos(key: string, fallback: number): number {
    return this.has(key) ? this.pos(key) : fallback;
  }

  str(key: string): string {
    const v = this.obj[key];
    if (typeof v !== 'string') throw this.error(key, `expected a string, ${this.describe(v)}`);
    return v;
  }

  optStr(key: string, fallback: string): string {
    return this.has(key) ? this.str(key) : fallback;
  }

  bool(key: string): boolean {
    const v = this.obj[key];
    if (typeof v !== 'boolean') throw this.error(key, `expected true or false, ${this.describe(v)}`);
    return v;
  }

  optBool(key: string, fallback: boolean): boolean {
    return this.has(key) ? this.bool(key) : fallback;
  }

  /** A nested object (null or absent → null). */
  optObj(key: string): Fields | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (!isObject(v)) throw this.error(key, `expected an object or null, ${this.describe(v)}`);
    return new Fields(this.file, v, this.name(key));
  }

  optStrArray(key: string): string[] | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
      throw this.error(key, `expected an array of strings, ${this.describe(v)}`);
    }
    return v as string[];
  }

  /** A token id: an integer ≥ 0, or a non-empty list of them (the first is taken), or null/absent → null. */
  optTokenId(key: string): number | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    const first = Array.isArray(v) ? (v[0] as unknown) : v;
    if (typeof first !== 'number' || !Number.isInteger(first) || first < 0) {
      throw this.error(key, `expected a token id (integer ≥ 0) or a non-empty list of them, ${this.describe(v)}`);
    }
    return first;
  }
}

/**
 * JSON text in which every number under one of `floatKeys` (at any depth) is written as a float: 1 → 1.0. Python
 * configs (transformers' strict config dataclasses) reject an int where the field is a float, and JSON.stringify
 * writes 1.0 as 1.
 */
export function stringifyWithFloats(value: unknown, floatKeys: ReadonlySet<string>, indent = 2): string {
  const mark = '\u0000float:';
  const text = JSON.stringify(
    value,
    (k, v: unknown) => (floatKeys.has(k) && typeof v === 'number' && Number.isFinite(v) ? `${mark}${Number.isInteger(v) ? v.toFixed(1) : String(v)}` : v),
    indent,
  );
  return text.replace(/"\\u0000float:([^"]*)"/g, '$1');
}

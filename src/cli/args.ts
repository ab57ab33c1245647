// Flag parsing shared by the commands: node:util parseArgs plus typed, validated number flags.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command accepts. */
export const commonOptions = {
  backend: { type: 'string', default: 'auto' },
  tokenizer: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies Options;

export function parse<O extends Options>(argv: string[], options: O, command: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    // node's messages for an ambiguous value span lines (the hint: --flag=-1); the CLI prints one line.
    throw new UserError(`mla ${command}: ${(e as Error).message.split('\n').join(' ')}`);
  }
}

/** A numeric flag: undefined → fallback; otherwise must parse and satisfy the check. */
export function num(
  value: string | boolean | undefined,
  flag: string,
  fallback: number,
  check: (n: number) => boolean = Number.isFinite,
  expected = 'a number',
): number {
  if (value === undefined || value === false) return fallback;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || !check(n)) {
    throw new UserError(`--${flag}: expected ${expected}, got '${String(value)}'`);
  }
  return n;
}

export const positiveInt = (n: number): boolean => Number.isInteger(n) && n > 0;
export const nonNegativeInt = (n: number): boolean => Number.isInteger(n) && n >= 0;

/** The one positional argument a command needs. */
export function onePositional(positionals: string[], what: string, command: string): string {
  const p = positionals[0];
  if (p === undefined) throw new UserError(`mla ${command}: missing ${what}`);
  if (positionals.length > 1) throw new UserError(`mla ${command}: unexpected argument '${positionals[1]}'`);
  return p;
}

/**
 * The --ctx flag of the scoring commands: windows of ctx tokens, 2 ≤ ctx ≤ the model's context (`maxPositions`, the
 * smallest of the models scored). Default min(256, context). A model whose context is below 2 cannot be scored at all,
 * which is said about the model, not about a flag nobody gave.
 */
export function ctxFlag(value: string | boolean | undefined, maxPositions: number, source: string): number {
  if (maxPositions < 2) {
    throw new UserError(`${source}: the model's context (max_position_embeddings) is ${maxPositions} token; scoring needs windows of at least 2 tokens`);
  }
  const ctx = num(value, 'ctx', Math.min(256, maxPositions), positiveInt, 'a positive integer');
  if (ctx < 2 || ctx > maxPositions) throw new UserError(`--ctx: expected 2..${maxPositions} (the model's context), got ${ctx}`);
  return ctx;
}

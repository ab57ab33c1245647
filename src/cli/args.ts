// Flags: each command declares its flags once (a FlagTable: type, default, one-line meaning); node:util parseArgs and
// the `--help` text are both derived from that table, so the help cannot drift from what the parser accepts.

import { parseArgs } from 'node:util';
import { renderOptionRefs, UserError } from '../errors.js';

/** One flag of a command. */
export interface Flag {
  readonly type: 'string' | 'boolean';
  /** One line: what it means (shown by --help). */
  readonly doc: string;
  /** Placeholder shown in the help (e.g. N, FILE, DIR); string flags only. */
  readonly value?: string;
  /** A default parseArgs fills in (so the code sees it as given), shown by --help. */
  readonly default?: string | boolean;
  /** A default the code computes at run time (from the model, or a run being resumed), shown by --help. */
  readonly defaultText?: string;
  readonly multiple?: boolean;
  readonly short?: string;
  /** The library option field this flag fills, when it is not the flag's camelCase (kv-rank → kvRank). */
  readonly field?: string;
}

export type FlagTable = Readonly<Record<string, Flag>>;

/** A command: its positional arguments and its flags, the one source of its parser and of its --help. */
export interface CommandSpec<F extends FlagTable = FlagTable> {
  readonly name: string;
  /** Positional arguments as shown in the usage line, e.g. 'MODEL' or 'TEACHER STUDENT...'. */
  readonly args: string;
  readonly flags: F;
}

/** Flags every command accepts. */
export const commonFlags = {
  backend: { type: 'string', value: 'ref|cpu|auto', default: 'auto', doc: 'compute backend (auto: the native cpu addon when built, else ref)' },
  tokenizer: { type: 'string', value: 'FILE', doc: 'tokenizer (llama2.c .bin or tokenizer.json); needed for a llama2.c checkpoint' },
  json: { type: 'boolean', default: false, doc: 'print results as JSON (for programs)' },
  help: { type: 'boolean', short: 'h', default: false, doc: 'print this help and exit' },
} as const satisfies FlagTable;

/** parseArgs' view of a flag table: the same keys and types, without the help-only fields. */
type ParseOptions<F extends FlagTable> = {
  [K in keyof F]: { type: F[K]['type'] } & (F[K] extends { multiple: true } ? { multiple: true } : object) &
    (F[K] extends { default: infer D } ? { default: D } : object) & (F[K] extends { short: infer S } ? { short: S } : object);
};

/** The parseArgs options for a flag table. */
export function parseOptions<F extends FlagTable>(flags: F): ParseOptions<F> {
  const out: Record<string, { type: 'string' | 'boolean'; default?: string | boolean; multiple?: boolean; short?: string }> = {};
  for (const [name, f] of Object.entries(flags)) {
    out[name] = { type: f.type, ...(f.default !== undefined ? { default: f.default } : {}), ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) };
  }
  return out as ParseOptions<F>;
}

/** Parse argv against a command's flag table (unknown flags are a UserError naming the command). */
type Parsed<F extends FlagTable> = ReturnType<typeof parseArgs<{ args: string[]; options: ParseOptions<F>; allowPositionals: true; strict: true }>>;

export function parse<F extends FlagTable>(argv: string[], spec: CommandSpec<F>): Parsed<F> {
  try {
    return parseArgs({ args: argv, options: parseOptions(spec.flags), allowPositionals: true, strict: true });
  } catch (e) {
    // node's messages for an ambiguous value span lines (the hint: --flag=-1); the CLI prints one line.
    throw new UserError(`mla ${spec.name}: ${(e as Error).message.split('\n').join(' ')}`);
  }
}

/** `mla X --help`: the usage line, the summary, then every flag with its placeholder, meaning and default. */
export function helpText(spec: CommandSpec, summary: string): string {
  const common = new Set(Object.keys(commonFlags));
  const head = (name: string, f: Flag): string => `  ${f.short ? `-${f.short}, ` : ''}--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
  // Meanings start in one column; a head longer than MAX_HEAD puts its meaning on the next line.
  const MAX_HEAD = 30;
  const width = Math.min(MAX_HEAD, Math.max(...Object.entries(spec.flags).map(([n, f]) => head(n, f).length))) + 2;
  const line = (name: string, f: Flag): string => {
    const h = head(name, f);
    const dflt = f.defaultText ?? (f.default === undefined || f.default === false ? undefined : f.default === '' ? "''" : String(f.default));
    const text = `${f.doc}${f.multiple ? ' (repeatable)' : ''}${dflt !== undefined ? ` [default: ${dflt}]` : ''}`;
    return h.length < width ? h.padEnd(width) + text : `${h}\n${' '.repeat(width)}${text}`;
  };
  const own = Object.entries(spec.flags).filter(([n]) => !common.has(n));
  const shared = Object.entries(spec.flags).filter(([n]) => common.has(n));
  return [
    `usage: mla ${spec.name}${spec.args ? ' ' + spec.args : ''} [options]`,
    '',
    summary,
    ...(own.length ? ['', 'options:', ...own.map(([n, f]) => line(n, f))] : []),
    '',
    'common options:',
    ...shared.map(([n, f]) => line(n, f)),
  ].join('\n');
}

/** The flag of a command that fills a library option field: an explicit `field`, else the camelCase of its name. */
export function flagForField(spec: CommandSpec, field: string): string | null {
  const camel = (n: string) => n.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
  for (const [name, f] of Object.entries(spec.flags)) if ((f.field ?? camel(name)) === field) return name;
  return null;
}

/** Library text (a message, a note) in the command's terms: each option reference ({field}) becomes the flag that
 *  sets it, looked up in this command first, then in `others` (advice such as "convert with {latentNorm}" names
 *  another command's flag); a field no flag sets stays its name. */
export function cliText(spec: CommandSpec, text: string, others: CommandSpec[] = []): string {
  return renderOptionRefs(text, (field) => {
    for (const s of [spec, ...others]) {
      const flag = flagForField(s, field);
      if (flag !== null) return `--${flag}`;
    }
    return `'${field}'`;
  });
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

/** A numeric flag whose default is in its flag table (parseArgs always supplies a value). */
export function numFlag(value: string | undefined, flag: string, check: (n: number) => boolean = Number.isFinite, expected = 'a number'): number {
  if (value === undefined) throw new Error(`--${flag}: its flag table gives no default`);
  return num(value, flag, Number.NaN, check, expected);
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

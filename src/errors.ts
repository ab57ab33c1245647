// Errors a user can act on: printed without a stack trace by the CLI.

/** Option references in a library message: `{kvRank}` names the option field kvRank. The library shows them as
 *  'kvRank'; the CLI, which knows which flag sets which field, as --kv-rank (cli/args.ts cliMessage). */
export function renderOptionRefs(text: string, name: (field: string) => string): string {
  return text.replace(/\{([\w.]+)\}/g, (_m, field: string) => name(field));
}

/** A problem with the user's input (file, option, config field): the message says what and where. */
export class UserError extends Error {
  /** The message with its option references unrendered ({field}). */
  readonly template: string;
  constructor(message: string) {
    super(renderOptionRefs(message, (f) => `'${f}'`));
    this.template = message;
    this.name = 'UserError';
  }
}

/** A malformed file: names the file and the field, and what was expected. */
export function formatError(file: string, field: string, expected: string): UserError {
  return new UserError(`${file}: ${field}: ${expected}`);
}

/** A bad value of a library option (ConvertOptions.kvRank, ExportOptions.out, …): the message starts with the option
 *  field (and the value), so the CLI shows the flag that set it: `--kv-rank 40: leaves …`. */
export class OptionError extends UserError {
  /**
   * @param field  the option field, as the library's option type spells it (e.g. 'kvRank', 'evalText')
   * @param value  the offending value, shown after the name (omit when there is none, e.g. a missing option)
   * @param detail what is wrong / what was expected; {other} names another option
   */
  constructor(
    readonly field: string,
    readonly value: string | number | undefined,
    readonly detail: string,
  ) {
    super(`{${field}}${value === undefined ? '' : ' ' + String(value)}: ${detail}`);
    this.name = 'OptionError';
  }
}

/** What an errno code means to someone who has to act on it (the codes file-system calls give for bad paths,
 *  permissions and full or read-only disks). */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large (the file-size limit, ulimit -f, or the file system’s maximum)',
  ENOTDIR: 'a component of the path is not a directory',
  EISDIR: 'is a directory, expected a file',
  EROFS: 'read-only file system',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EIO: 'input/output error',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EXDEV: 'cannot rename across file systems',
  EBUSY: 'device or resource busy',
  ETXTBSY: 'text file busy',
  EINVAL: 'invalid argument',
};

/** A Node file-system error (it carries an errno code and the syscall that failed). */
export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

/** One line for an fs error: "<path>: <what happened> (<syscall> <CODE>)". */
export function fsErrorMessage(e: NodeJS.ErrnoException, what?: string): string {
  const code = e.code ?? 'EUNKNOWN';
  const text = ERRNO_TEXT[code] ?? e.message.replace(/^[A-Z]+: /, '').split(',')[0];
  const dest = (e as { dest?: string }).dest;
  const where = e.path ? (dest ? `${e.path} → ${dest}` : e.path) : '(unnamed file)';
  const head = what === undefined ? where : what.includes(where) ? what : `${what}: ${where}`;
  return `${head}: ${text} (${e.syscall} ${code})`;
}

/** Turn an fs error into a UserError naming the path (prefixed with `what`, e.g. "--out model/"); anything else
 *  is returned unchanged, for the caller to rethrow. */
export function userFsError(e: unknown, what?: string): unknown {
  if (e instanceof UserError || !isFsError(e)) return e;
  return new UserError(fsErrorMessage(e, what));
}

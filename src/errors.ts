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

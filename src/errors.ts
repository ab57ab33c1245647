// Errors a user can act on: printed without a stack trace by the CLI.

/** A problem with the user's input (file, flag, config field): the message says what and where. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** A malformed file: names the file and the field, and what was expected. */
export function formatError(file: string, field: string, expected: string): UserError {
  return new UserError(`${file}: ${field}: ${expected}`);
}

/** A bad value of a library option (ConvertOptions.kvRank, ExportOptions.out, …). Library code names the option field;
 *  the CLI, which knows which flag fills which field, rewrites the message with the flag (cli/args.ts flagMessage).
 *  The detail may name other options as {field}: shown as 'field' here, as the flag by the CLI. */
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
    super(`${field}${value === undefined ? '' : ' ' + String(value)}: ${detail.replace(/\{(\w+)\}/g, "'$1'")}`);
    this.name = 'OptionError';
  }
}

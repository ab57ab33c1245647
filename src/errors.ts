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

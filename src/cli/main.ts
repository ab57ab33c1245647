#!/usr/bin/env node
// The `mla` command: main(argv) dispatches to one file per command; one error handler prints UserErrors without a stack.

import { UserError, fsErrorMessage, isFsError } from '../errors.js';
import { cliText, helpText } from './args.js';
import { commands } from './commands.js';

export function usage(): string {
  const lines = ['usage: mla <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Every command takes --backend ref|cpu|auto and --json; `mla <command> --help` lists its flags and defaults.');
  return lines.join('\n');
}

/** Messages are one line (a path or a value quoted into one may hold a newline). */
function oneLine(s: string): string {
  return s.replace(/\r?\n/g, '\\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`mla: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  const { spec, run } = await cmd.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(helpText(spec, cmd.summary) + '\n');
    return 0;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      const others = await Promise.all(Object.values(commands).map(async (c) => (await c.load()).spec));
      process.stderr.write(`error: ${oneLine(cliText(spec, e.template, others))}\n`);
      return 1;
    }
    // A file-system failure (missing file, permission, full or read-only disk) is the user's to fix, not a bug:
    // one line naming the path, no stack. The writers have already removed their temporary files.
    if (isFsError(e)) {
      process.stderr.write(`error: ${oneLine(fsErrorMessage(e))}\n`);
      return 1;
    }
    throw e;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 70;
  },
);

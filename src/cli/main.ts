#!/usr/bin/env node
// The `mla` command: main(argv) dispatches to one file per command; one error handler prints UserErrors without a stack.

import { UserError, fsErrorMessage, isFsError } from '../errors.js';

type Command = (argv: string[]) => Promise<void>;

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  demo: { summary: 'the whole job on the bundled stories260K: convert, distil, compare, report.md', load: async () => (await import('./demo.js')).demoCommand },
  info: { summary: 'architecture, parameters, per-layer attention, KV bytes per token', load: async () => (await import('./info.js')).infoCommand },
  generate: { summary: 'generate text (stdout: prompt + continuation)', load: async () => (await import('./generate.js')).generateCommand },
  convert: { summary: 'convert a GQA/MHA model into MLA (SVD/PCA init)', load: async () => (await import('./convert.js')).convertCommand },
  distill: { summary: 'distil a converted student from its teacher (forward KL)', load: async () => (await import('./distill.js')).distillCommand },
  export: { summary: 'export to GGUF (llama.cpp) or the stock DeepSeek-V3 layout (transformers, vLLM)', load: async () => (await import('./export.js')).exportCommand },
  compare: { summary: 'compare a teacher and students (KV, perplexity, KL, tasks) and write a report', load: async () => (await import('./compare.js')).compareCommand },
  ppl: { summary: 'perplexity on a text file', load: async () => (await import('./ppl.js')).pplCommand },
  eval: { summary: 'zero-shot multiple-choice tasks (acc, acc_norm)', load: async () => (await import('./eval.js')).evalCommand },
};

export function usage(): string {
  const lines = ['usage: mla <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Every command takes --backend ref|cpu|auto, and --json where it prints results.');
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
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`mla ${name}: ${cmd.summary}\n(see README.md for its flags)\n`);
    return 0;
  }
  try {
    await (await cmd.load())(rest);
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`error: ${oneLine(e.message)}\n`);
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

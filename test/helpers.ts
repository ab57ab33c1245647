// Shared test helpers: fixture paths, the built CLI, temporary directories.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, 'fixtures');
export const STORIES_BIN = join(FIXTURES, 'stories260K', 'stories260K.bin');
export const STORIES_TOK = join(FIXTURES, 'stories260K', 'tok512.bin');
export const STORIES_GOLDEN = join(FIXTURES, 'stories260K', 'expected_greedy_200.txt');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Run the built CLI; returns stdout, stderr and the exit status. */
export function mla(args: string[]): { stdout: string; stderr: string; status: number } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? -1 };
}

/** Run the CLI and require success. */
export function mlaOk(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** A fresh temporary directory removed by the returned cleanup. */
export function tempDir(prefix = 'mla-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

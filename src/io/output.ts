// Where the tool writes: temporary names beside the target, clean-up of what killed runs left, and the checks that
// keep an output away from the inputs and keep --overwrite from removing anything the tool did not write.
//
// The rules (README: "What the tool guarantees on bad input, full disks and kill -9"):
// - every file is written under `<target>.tmp-<pid>-<hex>` and renamed into place; a failure removes the temporary;
// - the next write into a directory removes `*.tmp-<pid>-<hex>` / `*.old-<pid>-<hex>` entries whose process is gone
//   (kill -9 leaves them; a live process's are left alone);
// - an output may not be an input, contain one or lie inside one (checked before any work);
// - --overwrite replaces a directory only when it carries our marker (OUTPUT_MARKER, listing the files we wrote) and
//   holds nothing else, and a GGUF file only when it carries our metadata key; anything else is refused.

import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { UserError } from '../errors.js';
import { withFile } from './binfile.js';

/** The file in every directory the tool writes, listing the files it wrote there. */
export const OUTPUT_MARKER = '.mla-upcycle-output.json';

/** GGUF metadata key every GGUF the tool writes carries (what lets --overwrite replace it). */
export const GGUF_WRITER_KEY = 'mla_upcycle.writer';

const TEMP_RE = /\.(tmp|old)-(\d+)-[0-9a-f]{8}$/;

/** A unique temporary name beside `path` (same directory, so rename is atomic). Removes stale temporaries of dead
 *  processes from that directory first. */
export function tempNameFor(path: string): string {
  removeStaleTemps(dirname(resolve(path)));
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Whether process `pid` is alive (EPERM: it exists but belongs to someone else). */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove `*.tmp-PID-hex` / `*.old-PID-hex` entries of `dir` whose PID is not a live process. Best effort: a
 *  directory we cannot list or an entry we cannot remove is left as it is. Returns the names removed. */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = TEMP_RE.exec(n);
    if (!m || alive(Number(m[2]))) continue;
    try {
      rmSync(join(dir, n), { recursive: true, force: true });
      removed.push(n);
    } catch {
      /* someone else's, or already gone */
    }
  }
  return removed;
}

/** The real path of `p`, or for a path that does not exist yet, its nearest existing ancestor's real path joined
 *  with the rest (so symlinks and `..` cannot hide that two paths are the same). */
export function canonicalPath(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest);
    } catch {
      const parent = dirname(cur);
      if (parent === cur) return abs;
      rest.unshift(basename(cur));
      cur = parent;
    }
  }
}

const within = (child: string, parent: string): boolean => child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

export interface OutputCheck {
  /** How the output is named in messages, e.g. "--out". */
  flag: string;
  out: string;
  /** Files and directories the job reads (models, tokenizers, text): the output may not touch them. */
  inputs: readonly (string | undefined)[];
  kind: 'dir' | 'file';
  overwrite: boolean;
  /** The job adds its files to the directory (a report) instead of replacing it: an existing directory is fine. */
  merge?: boolean;
}

/**
 * Refuse an output that would destroy an input or that cannot be written, before any work is done: the output is
 * not an input, does not contain one and is not inside an input directory; its nearest existing ancestor is a
 * directory; an existing output is the right kind and, when not empty, is replaceable (see assertReplaceable).
 */
export function checkOutput(c: OutputCheck): void {
  const what = `${c.flag} ${c.out}`;
  const out = canonicalPath(c.out);
  for (const input of c.inputs) {
    if (!input || !existsSync(input)) continue;
    const inp = canonicalPath(input);
    if (out === inp) throw new UserError(`${what}: is the input ${input}; choose another output`);
    if (within(inp, out)) throw new UserError(`${what}: contains the input ${input}; choose an output outside it`);
    if (within(out, inp)) throw new UserError(`${what}: lies inside the input ${input}; choose an output outside it`);
  }
  // The nearest existing ancestor must be a directory (else every write fails with ENOTDIR).
  let anc = dirname(resolve(c.out));
  while (!existsSync(anc)) anc = dirname(anc);
  if (!statSync(anc).isDirectory()) throw new UserError(`${what}: ${anc} is a file, not a directory`);
  if (!existsSync(c.out)) return;
  const st = statSync(c.out);
  if (c.kind === 'file') {
    if (st.isDirectory()) throw new UserError(`${what}: is a directory; this output is one file`);
    if (!st.isFile()) throw new UserError(`${what}: exists and is not a regular file`);
    if (!c.overwrite) throw new UserError(`${what}: already exists (add {overwrite})`);
    assertReplaceableFile(c.out, what);
    return;
  }
  if (!st.isDirectory()) throw new UserError(`${what}: exists and is not a directory`);
  if (c.merge || readdirSync(c.out).length === 0) return;
  if (!c.overwrite) throw new UserError(`${what}: already exists and is not empty (add {overwrite})`);
  assertReplaceableDir(c.out, what);
}

/** The files the marker of `dir` lists, or null when there is no (valid) marker. */
function markedFiles(dir: string): Set<string> | null {
  const f = join(dir, OUTPUT_MARKER);
  if (!existsSync(f)) return null;
  try {
    const j = JSON.parse(readFileSync(f, 'utf8')) as { files?: unknown };
    if (!Array.isArray(j.files) || j.files.some((x) => typeof x !== 'string')) return null;
    return new Set(j.files as string[]);
  } catch {
    return null;
  }
}

/** A non-empty directory may be replaced only when we wrote it and it holds nothing we did not write. */
export function assertReplaceableDir(dir: string, what = dir): void {
  const ours = markedFiles(dir);
  if (!ours) {
    throw new UserError(`${what}: was not written by mla-upcycle (no valid ${OUTPUT_MARKER}); {overwrite} only replaces its own outputs: remove it yourself or choose another output`);
  }
  for (const n of readdirSync(dir)) {
    if (n === OUTPUT_MARKER || ours.has(n)) continue;
    throw new UserError(`${what}: holds ${n}, which mla-upcycle did not write; {overwrite} only replaces its own outputs: move it away or choose another output`);
  }
}

/** An existing file may be replaced only when it is a GGUF file we wrote (our metadata key in its header). */
export function assertReplaceableFile(file: string, what = file): void {
  // The key sits in the metadata, which precedes the tensor data: the first MiB holds it.
  const head = Buffer.from(withFile(file, (f) => f.read(0, Math.min(f.size, 1 << 20))));
  if (head.subarray(0, 4).toString('latin1') !== 'GGUF' || !head.includes(Buffer.from(GGUF_WRITER_KEY))) {
    throw new UserError(`${what}: was not written by mla-upcycle; {overwrite} only replaces its own outputs: remove it yourself or choose another output`);
  }
}

/** The marker's contents for a directory holding `files`. */
export function markerJson(files: readonly string[]): string {
  return JSON.stringify({ written_by: 'mla-upcycle', files: [...files].sort() }, null, 2) + '\n';
}

/**
 * Move a finished temporary directory into place, first writing the marker that lists its files. An existing empty
 * `dir` is replaced; a non-empty one only with `overwrite` and only when assertReplaceableDir allows it (ours, with
 * nothing foreign inside). The old directory is renamed away before the new one moves in, then removed.
 */
export function replaceDir(tmp: string, dir: string, overwrite: boolean): void {
  writeFileSync(join(tmp, OUTPUT_MARKER), markerJson(readdirSync(tmp).filter((n) => n !== OUTPUT_MARKER)));
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: exists and is not a directory`);
    if (readdirSync(dir).length === 0) {
      rmSync(dir, { recursive: true });
    } else if (!overwrite) {
      throw new UserError(`${dir}: already exists and is not empty (add {overwrite})`);
    } else {
      assertReplaceableDir(dir);
      const old = tempNameFor(dir).replace(/\.tmp-(?=\d+-[0-9a-f]{8}$)/, '.old-');
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
      return;
    }
  }
  renameSync(tmp, dir);
}

/** Create the missing parent directories of `path`; returns an undo that removes the ones it created (for a failed
 *  job, which must leave nothing behind). */
export function makeParents(path: string): () => void {
  let first: string | null = null;
  for (let p = dirname(resolve(path)); !existsSync(p); p = dirname(p)) first = p;
  if (first === null) return () => {};
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const created = first;
  return () => rmSync(created, { recursive: true, force: true });
}

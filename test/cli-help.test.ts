// `mla X --help` for every command lists every flag X's parser accepts (both come from one flag table), each with its
// meaning and, where it has one, its default.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commands } from '../src/cli/commands.js';
import { mla } from './helpers.js';

test('mla X --help lists every flag of X with its default, for every command', async () => {
  for (const [name, c] of Object.entries(commands)) {
    const { spec } = await c.load();
    assert.equal(spec.name, name);
    const r = mla([name, '--help']);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage: mla ${name}\\b`));
    // A flag's entry: its line, plus a continuation line (meaning under a long head) when there is one.
    const lines = r.stdout.split('\n').reduce<string[]>((acc, l) => {
      if (/^\s{6,}\S/.test(l) && acc.length > 0) acc[acc.length - 1] += ' ' + l.trim();
      else acc.push(l);
      return acc;
    }, []);
    for (const [flag, f] of Object.entries(spec.flags)) {
      const line = lines.find((l) => new RegExp(`^\\s+(-\\w, )?--${flag}\\b`).test(l));
      assert.ok(line, `mla ${name} --help does not list --${flag}`);
      assert.ok(line.includes(f.doc), `--${flag}: its one-line meaning`);
      const dflt = f.defaultText ?? (typeof f.default === 'string' ? (f.default === '' ? "''" : f.default) : f.default === true ? 'true' : undefined);
      if (dflt !== undefined) assert.ok(line.includes(`[default: ${dflt}]`), `mla ${name} --help: --${flag} shows its default ${dflt}: ${line}`);
    }
    // No flag listed that the parser does not accept.
    const listed = lines.flatMap((l) => /^\s+(?:-\w, )?--([\w-]+)/.exec(l)?.[1] ?? []);
    assert.deepEqual(listed.sort(), Object.keys(spec.flags).sort(), name);
  }
});

test('mla with no command lists every command and points at --help', () => {
  const r = mla(['--help']);
  assert.equal(r.status, 0);
  for (const name of Object.keys(commands)) assert.match(r.stdout, new RegExp(`^  ${name}\\s`, 'm'));
  assert.match(r.stdout, /--help/);
});

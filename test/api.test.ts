// The package entry (package.json "main") as a library user sees it: load → convert → save → load → generate on the
// bundled stories260K, with typed options and no CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, STORIES_BIN, STORIES_TOK, tempDir } from './helpers.js';

type Api = typeof import('../src/index.js');

async function entry(): Promise<Api> {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { main: string; types: string };
  assert.equal(pkg.types.replace(/\.d\.ts$/, '.js'), pkg.main, 'types sit beside main');
  readFileSync(join(ROOT, pkg.types)); // the declarations exist
  return (await import(pathToFileURL(join(ROOT, pkg.main)).href)) as Api;
}

test('library: load, convert, save, load back and generate through the package entry', async () => {
  const mla = await entry();
  const teacher = mla.load(STORIES_BIN, { tokenizer: STORIES_TOK, backend: 'ref' });
  const student = mla.convert(teacher, { plan: { kind: 'rank', rank: 16 }, ropeDim: 4, calib: { samples: 2, length: 32 } });
  // 5 layers × (r_kv 16 + d_r 4) values of 4 bytes, against the teacher's 5 × 2·4·8.
  assert.equal(student.result.studentKvBytesPerToken, 5 * 20 * 4);
  assert.equal(student.result.teacherKvBytesPerToken, 5 * 64 * 4);
  assert.ok(student.result.notes.every((n) => !/[{}]|--/.test(n)), 'notes name option fields, not CLI flags');
  const greedy = { maxTokens: 12, temperature: 0 };
  const text = mla.generate(student, 'Once upon a time', greedy);
  assert.ok(text.startsWith('Once upon a time') && text.length > 'Once upon a time'.length, text);

  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'mla');
    student.save(out);
    const back = mla.load(out, { backend: 'ref' });
    assert.equal(back.model.config.arch, 'deepseek_v3');
    assert.equal(mla.generate(back, 'Once upon a time', greedy), text, 'the saved directory generates the same greedy text');
    const ppl = mla.evaluate.ppl(back, 'Once upon a time, there was a little dog. The dog liked to run in the park.');
    assert.ok(Number.isFinite(ppl.perplexity) && ppl.perplexity > 1);
    // Bad options are OptionErrors naming the library field.
    assert.throws(() => mla.convert(teacher, { plan: { kind: 'rank', rank: 16 }, keepLayers: [9] }), (e: unknown) =>
      e instanceof mla.OptionError && e.field === 'keepLayers' && /^'keepLayers': layer 9 outside 0\.\.4$/.test(e.message));
  } finally {
    cleanup();
  }
});

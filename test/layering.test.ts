// The layering of DESIGN.md, checked mechanically: every relative import in src/ (static or dynamic) goes to a lower
// layer, or along one of the few named sideways edges between jobs. A new folder must be placed in LAYERS first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from './helpers.js';

/** Rank of each top-level unit of src/ (folders, and the root files): imports must go to a strictly lower rank. */
const LAYERS: Record<string, number> = {
  'errors.ts': 0, // UserError, OptionError
  'progress.ts': 0, // the ProgressSink interface every job reports to
  tensor: 1,
  linalg: 2,
  backends: 3,
  autograd: 4,
  model: 5,
  io: 6, // reads files into model configs and weights
  report: 6, // tables, SVG charts, report.md (formats results; computes nothing)
  convert: 7,
  train: 7,
  eval: 7,
  infer: 7,
  export: 7,
  cli: 9, // one file per command
  'index.ts': 9, // the public library API
};

/** Sideways edges between jobs of one rank (acyclic): distillation evaluates (eval/perplexity) and carries conversion
 *  records; the export's rope fit uses the conversion's nearest geometric run (convert/rope-select). */
const SIDEWAYS = new Set(['train -> eval', 'train -> convert', 'export -> convert']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The unit of src/ a file belongs to: its top folder, or its own name for a file at the root. */
function unit(srcDir: string, file: string): string {
  return relative(srcDir, file).split(/[\\/]/)[0]!;
}

test('no module in src/ imports a layer above it', () => {
  const srcDir = join(ROOT, 'src');
  const files = sources(srcDir);
  assert.ok(files.length > 50, 'found the sources');
  const bad: string[] = [];
  const seen = new Set<string>();
  for (const file of files) {
    const from = unit(srcDir, file);
    assert.ok(from in LAYERS, `src/${from} is not placed in a layer (test/layering.test.ts LAYERS)`);
    const text = readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2]!);
    for (const spec of specs) {
      if (!spec.startsWith('.')) continue; // node: builtins and packages
      const target = resolve(dirname(file), spec);
      assert.ok(target.startsWith(srcDir), `${relative(ROOT, file)} imports ${spec}, outside src/`);
      const to = unit(srcDir, target.replace(/\.js$/, '.ts'));
      if (to === from) continue;
      const edge = `${from} -> ${to}`;
      seen.add(edge);
      assert.ok(to in LAYERS, `${relative(ROOT, file)} imports src/${to}, which is not placed in a layer`);
      if (!(LAYERS[to]! < LAYERS[from]!) && !SIDEWAYS.has(edge)) bad.push(`${relative(ROOT, file)}: ${edge} (${spec})`);
    }
  }
  assert.deepEqual(bad, [], `imports against the layering:\n${bad.join('\n')}`);
  // The check is live: the stack's main downward edges exist.
  for (const e of ['cli -> convert', 'convert -> model', 'model -> autograd', 'autograd -> tensor', 'backends -> tensor']) assert.ok(seen.has(e), e);
});

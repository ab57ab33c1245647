// All benchmarks in one go (npm run bench): sgemm GFLOP/s against OpenBLAS, forward tokens/s per backend.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
for (const b of ['sgemm.js', 'forward.js']) {
  process.stdout.write(`\n## ${b.replace('.js', '')}\n\n`);
  const r = spawnSync(process.execPath, [join(here, b), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}

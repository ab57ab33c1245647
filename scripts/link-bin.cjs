// Links the package's own `mla` bin into node_modules/.bin so `npx mla …` works inside this checkout after
// `npm install` (npm links the bins of dependencies only, never the root package's own).
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const target = path.join(root, 'dist', 'src', 'cli', 'main.js');
const binDir = path.join(root, 'node_modules', '.bin');
const link = path.join(binDir, 'mla');
if (!fs.existsSync(target)) {
  console.warn('mla-upcycle: dist/src/cli/main.js is missing (tsc did not run); npx mla will not work');
  process.exit(0);
}
fs.chmodSync(target, 0o755);
fs.mkdirSync(binDir, { recursive: true });
try {
  fs.unlinkSync(link);
} catch {}
fs.symlinkSync(path.relative(binDir, target), link);

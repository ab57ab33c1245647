// npm install hook: builds the cpu backend's addon with node-gyp (g++ only) unless an up-to-date build exists
// (npm runs this hook again when `npx mla` installs the checkout into its cache); on failure the project still
// works on the pure-TypeScript ref backend.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const out = path.join(root, 'build', 'Release', 'mla_cpu.node');
const sources = ['binding.gyp', ...fs.readdirSync(path.join(root, 'native', 'cpu')).map((f) => path.join('native', 'cpu', f))];
const newest = Math.max(...sources.map((f) => fs.statSync(path.join(root, f)).mtimeMs));
if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= newest && process.env.MLA_REBUILD !== '1') {
  console.log('mla-upcycle: native cpu backend is up to date');
  process.exit(0);
}
const r = spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit', shell: true });
if (r.status !== 0) {
  console.warn('mla-upcycle: the native cpu backend was not built (g++ or node headers missing); falling back to the ref backend.');
}

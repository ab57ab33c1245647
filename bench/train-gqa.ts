// A trained HF-style GQA model with head dim 32 for conversion benchmarks (stories260K's head dim is 8, too small to
// say much about real models' rope/latent trade-offs): a random Llama-shaped model (4 layers, hidden 256, 8 heads,
// 2 kv heads, head dim 32, tied embeddings, stories260K's 512-token vocabulary) trained by `mla distill` from
// stories260K on its own samples (KL, all parameters). The run directory is the model (with tokenizer.bin).
// Usage: node dist/bench/train-gqa.js --out DIR [--tokens 2000000] [--lr 0.003] [--samples 2048 (teacher samples, reused)]

import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors, parameterCount } from '../src/model/weights.js';
import { saveHfModel } from '../src/io/hf.js';

const { values } = parseArgs({ options: { out: { type: 'string' }, tokens: { type: 'string', default: '2000000' }, lr: { type: 'string', default: '0.003' }, samples: { type: 'string', default: '2048' } } });
if (!values.out) throw new Error('--out DIR is required');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STORIES = join(ROOT, 'fixtures', 'stories260K');

const config: ModelConfig = {
  arch: 'llama', vocabSize: 512, hiddenSize: 256, intermediateSize: 688, numLayers: 4, numHeads: 8, rmsNormEps: 1e-5,
  ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 32), ropeTheta: 10000, ropeScaling: null, maxPositions: 512,
  tieEmbeddings: true, bosTokenId: 1, eosTokenId: 2,
  layers: Array.from({ length: 4 }, () => ({ kind: 'gqa' as const, numKvHeads: 2, headDim: 32, qkvBias: false })),
};
const rng = mulberry32(32);
const w = new Map<string, Tensor>();
for (const s of modelTensors(config)) {
  const t = Tensor.zeros(s.shape);
  // Norm gains 1; projections N(0, 0.02) as Llama initialises them.
  for (let i = 0; i < t.size; i++) t.data[i] = s.shape.length === 1 ? 1 : 0.02 * gaussian(rng);
  w.set(s.name, t);
}
const tmp = mkdtempSync(join(tmpdir(), 'mla-train-gqa-'));
try {
  const init = join(tmp, 'init');
  saveHfModel(init, config, w);
  process.stderr.write(`random init: ${(parameterCount(config) / 1e6).toFixed(2)}M parameters; distilling ${values.tokens} tokens from stories260K\n`);
  execFileSync(process.execPath, [
    join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'distill', '--teacher', join(STORIES, 'stories260K.bin'), '--tokenizer', join(STORIES, 'tok512.bin'),
    '--student', init, '--out', values.out, '--tokens', values.tokens, '--lr', values.lr, '--self-generate', values.samples, '--eval-text', join(ROOT, 'fixtures', 'heldout', 'stories-heldout.txt'),
  ], { stdio: 'inherit' });
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// Memory and speed of bf16 weights kept as read (the default) against every weight widened to f32 at load (the
// layout before backend-owned storage), on a random Llama-shaped HF checkpoint stored in bf16 (~34M parameters).
// Each mode runs in its own child process so resident memory is its own: RSS after load, peak RSS, perplexity
// tokens/s (B × T windows), decode tokens/s (greedy), and the perplexity itself (the two must agree).
// Speeds are the best of 3 rounds (the machine may be shared). Not a test; never gates on a time.
// Usage: node dist/bench/weights-dtype.js [--dir DIR] [--backend cpu|ref] [--threads N (1)] [--json]

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { liveBuffers } from '../src/tensor/storage.js';
import { getBackend } from '../src/backends/index.js';
import { Model, type WeightDtypePolicy } from '../src/model/model.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors, parameterCount } from '../src/model/weights.js';
import { loadHfModel, saveHfModel } from '../src/io/hf.js';
import { perplexity } from '../src/eval/perplexity.js';
import { generate } from '../src/model/generate.js';
import { table } from '../src/report/table.js';
import type { CpuBackend } from '../src/backends/cpu/index.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/tmp/mla-bench-llama34m-bf16' },
    backend: { type: 'string', default: 'cpu' },
    threads: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});
const dir = values.dir;
const backendName = values.backend as 'cpu' | 'ref';

const CONFIG: ModelConfig = {
  arch: 'llama', vocabSize: 8192, hiddenSize: 512, intermediateSize: 1536, numLayers: 8, numHeads: 8, rmsNormEps: 1e-5,
  ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 64), ropeTheta: 10000, ropeScaling: null, maxPositions: 2048,
  tieEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
  layers: Array.from({ length: 8 }, () => ({ kind: 'gqa' as const, numKvHeads: 4, headDim: 64, qkvBias: false })),
};

function makeCheckpoint(): void {
  const rng = mulberry32(1);
  const weights = new Map<string, Tensor>();
  for (const s of modelTensors(CONFIG)) {
    const t = Tensor.zeros(s.shape);
    const d = t.data;
    for (let i = 0; i < t.size; i++) d[i] = s.shape.length === 1 ? 1 + 0.1 * gaussian(rng) : 0.05 * gaussian(rng);
    weights.set(s.name, t);
  }
  saveHfModel(dir, CONFIG, weights, 'BF16');
}

interface Result {
  weights: WeightDtypePolicy;
  backend: string;
  parameters: number;
  weight_bytes: number;
  rss_after_load_mb: number;
  /** Peak RSS up to the end of loading (reading the file and building the model). */
  peak_rss_load_mb: number;
  peak_rss_mb: number;
  ppl_tokens_per_s: number;
  decode_tokens_per_s: number;
  perplexity: number;
}

const MB = 1024 * 1024;

function child(policy: WeightDtypePolicy): Result {
  const be = getBackend(backendName);
  if (be.name === 'cpu') (be as CpuBackend).setThreads(Number(values.threads));
  let model: Model;
  {
    const loaded = loadHfModel(dir);
    model = Model.fromWeights(loaded.config, loaded.weights, be, dir, { weights: policy });
  }
  (globalThis as { gc?: () => void }).gc?.();
  const rssAfterLoad = process.memoryUsage().rss / MB;
  const live0 = liveBuffers().buffers;
  const peakLoad = process.resourceUsage().maxRSS / 1024;
  let weightBytes = 0;
  for (const v of model.params.values()) weightBytes += v.value.storage.byteLength;
  const rng = mulberry32(7);
  const ids = Array.from({ length: 8 * 256 + 1 }, () => 3 + Math.floor(rng() * (CONFIG.vocabSize - 3)));
  perplexity(model, ids.slice(0, 257), 256, 1); // warm-up
  let pplSecs = Infinity;
  let decSecs = Infinity;
  let ppl = { perplexity: NaN, tokens: 0 };
  let generated = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    ppl = perplexity(model, ids, 256, 8);
    pplSecs = Math.min(pplSecs, (performance.now() - t0) / 1000);
    const t1 = performance.now();
    generated = generate(model, [1], { maxTokens: 64, temperature: 0, topP: 1, seed: 1 }).length;
    decSecs = Math.min(decSecs, (performance.now() - t1) / 1000);
  }
  const peak = process.resourceUsage().maxRSS / 1024;
  if (liveBuffers().buffers !== live0) throw new Error(`bench: ${liveBuffers().buffers} live buffers after the runs, ${live0} before`);
  return {
    weights: policy, backend: backendName, parameters: parameterCount(CONFIG), weight_bytes: weightBytes,
    rss_after_load_mb: Math.round(rssAfterLoad), peak_rss_load_mb: Math.round(peakLoad), peak_rss_mb: Math.round(peak),
    ppl_tokens_per_s: Math.round(ppl.tokens / pplSecs), decode_tokens_per_s: Math.round(generated / decSecs),
    perplexity: ppl.perplexity,
  };
}

if (values.child) {
  process.stdout.write(JSON.stringify(child(values.child as WeightDtypePolicy)) + '\n');
} else {
  if (!existsSync(join(dir, 'config.json'))) {
    process.stderr.write(`writing a random bf16 checkpoint to ${dir}\n`);
    makeCheckpoint();
  }
  const self = fileURLToPath(import.meta.url);
  const results: Result[] = [];
  for (const policy of ['f32', 'file'] as const) {
    const r = spawnSync(process.execPath, ['--expose-gc', self, '--child', policy, '--dir', dir, '--backend', backendName, '--threads', values.threads], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bench child (${policy}) failed: ${r.stderr}`);
    results.push(JSON.parse(r.stdout.trim()) as Result);
  }
  if (values.json) {
    for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const base = results[0]!;
    process.stdout.write(table(
      ['weights in memory', 'weight MB', 'RSS after load MB', 'peak RSS load MB', 'peak RSS MB', 'ppl tokens/s', 'decode tokens/s', 'perplexity'],
      results.map((r) => [
        r.weights === 'file' ? 'bf16 as read (default)' : 'f32 (widened at load)',
        (r.weight_bytes / MB).toFixed(1), r.rss_after_load_mb, r.peak_rss_load_mb, r.peak_rss_mb,
        `${r.ppl_tokens_per_s} (${(r.ppl_tokens_per_s / base.ppl_tokens_per_s).toFixed(2)}×)`,
        `${r.decode_tokens_per_s} (${(r.decode_tokens_per_s / base.decode_tokens_per_s).toFixed(2)}×)`,
        r.perplexity.toFixed(4),
      ]),
    ) + '\n');
    process.stdout.write(`${(base.parameters / 1e6).toFixed(1)}M parameters, backend ${backendName}, ${values.threads} thread(s), ${dir}\n`);
  }
}

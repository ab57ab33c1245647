// Forward throughput of every backend: prefill (B × T tokens per call, training-shaped) and cached decode (one token
// per step), on stories260K and on a Llama-shaped random model, for the GQA teacher and its MLA conversion.
// Not a test; never gates on a time. Usage: node dist/bench/forward.js [--quick] [--json]
// Ratios are against the ref backend measured in the same run (the cpu backend's speed-up).

import { parseArgs } from 'node:util';
import { Tensor } from '../src/tensor/tensor.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { noGrad } from '../src/autograd/var.js';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { forward } from '../src/model/forward.js';
import { KVCache } from '../src/model/cache.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';
import { loadLlama2c } from '../src/io/llama2c.js';
import { convert } from '../src/convert/convert.js';
import { table } from '../src/report/table.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
const budget = values.quick ? 0.5 : 2; // seconds per point

function llamaShaped(): { config: ModelConfig; weights: Map<string, Tensor> } {
  const rng = mulberry32(1);
  const config: ModelConfig = {
    arch: 'llama', vocabSize: 4096, hiddenSize: 512, intermediateSize: 1376, numLayers: 8, numHeads: 8, rmsNormEps: 1e-5,
    ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 64), ropeTheta: 10000, ropeScaling: null, maxPositions: 2048,
    tieEmbeddings: true, bosTokenId: 1, eosTokenId: 2,
    layers: Array.from({ length: 8 }, () => ({ kind: 'gqa' as const, numKvHeads: 2, headDim: 64, qkvBias: false })),
  };
  const weights = new Map<string, Tensor>();
  for (const s of modelTensors(config)) {
    const t = Tensor.zeros(s.shape);
    for (let i = 0; i < t.size; i++) t.data[i] = s.shape.length === 1 ? 1 : 0.02 * gaussian(rng);
    weights.set(s.name, t);
  }
  return { config, weights };
}

/** Repeat fn until the time budget is spent; returns calls per second (median of 3 rounds). */
function rate(fn: () => void): number {
  fn();
  const rounds: number[] = [];
  for (let r = 0; r < 3; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < (budget * 1000) / 3) {
      fn();
      n++;
    }
    rounds.push(n / ((performance.now() - t0) / 1000));
  }
  return rounds.sort((a, b) => a - b)[1]!;
}

interface Point { model: string; attention: string; mode: string; backend: string; tokens_per_s: number }
const points: Point[] = [];
const models = [
  { name: 'stories260K', ...loadLlama2c('fixtures/stories260K/stories260K.bin'), B: 8, T: 256, ctx: 256 },
  { name: 'llama-shaped 27M', ...llamaShaped(), B: 1, T: 256, ctx: 512 },
];
for (const m of models) {
  const teacher = Model.fromWeights(m.config, m.weights, getBackend('auto'));
  const conv = convert(teacher, null, {
    plan: { kind: 'ratio', ratio: 4 }, ropeMethod: 'ecomla', basis: 'weight', nopeInit: 'identity', qRank: null, latentNorm: false,
    keepLayers: [], calib: { samples: 1, length: 8, seed: 1 },
  });
  for (const [attention, cfg, w] of [['gqa', m.config, m.weights], ['mla 4×', conv.config, conv.weights]] as const) {
    for (const be of availableBackends()) {
      if (be === 'ref' && m.name !== 'stories260K' && values.quick) continue;
      const model = Model.fromWeights(cfg, w, getBackend(be));
      const ids = Int32Array.from({ length: m.B * m.T }, (_, i) => (i * 31) % cfg.vocabSize);
      const prefill = rate(() => noGrad(() => forward(model, ids, m.B, m.T))) * m.B * m.T;
      points.push({ model: m.name, attention, mode: `prefill ${m.B}×${m.T}`, backend: be, tokens_per_s: prefill });
      // Decode: fill the cache to ctx/2, then time single-token steps (the cache is rebuilt when full).
      let cache = new KVCache(model, 1, m.ctx);
      const decode = rate(() => noGrad(() => {
        if (cache.length >= m.ctx) cache = new KVCache(model, 1, m.ctx);
        forward(model, Int32Array.of(cache.length % cfg.vocabSize), 1, 1, { cache });
      }));
      points.push({ model: m.name, attention, mode: `decode (ctx ≤ ${m.ctx})`, backend: be, tokens_per_s: decode });
    }
  }
}
if (values.json) {
  for (const p of points) process.stdout.write(JSON.stringify(p) + '\n');
} else {
  const refOf = (p: Point) => points.find((q) => q.backend === 'ref' && q.model === p.model && q.attention === p.attention && q.mode === p.mode);
  process.stdout.write(table(['model', 'attention', 'mode', 'backend', 'tokens/s', 'vs ref'], points.map((p) => {
    const r = refOf(p);
    return [p.model, p.attention, p.mode, p.backend, Math.round(p.tokens_per_s), r ? `${(p.tokens_per_s / r.tokens_per_s).toFixed(1)}×` : '-'];
  })) + '\n');
}

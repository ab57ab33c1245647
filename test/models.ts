// Small random models for tests (seeded).

import { Tensor } from '../src/tensor/tensor.js';
import type { Backend } from '../src/tensor/backend.js';
import { mulberry32, gaussian } from '../src/tensor/rng.js';
import { refBackend } from '../src/backends/ref/index.js';
import { Model } from '../src/model/model.js';
import { defaultInvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors } from '../src/model/weights.js';

/** A random Llama-style (half-split rope) GQA model with q/k/v biases optional (6 heads; 2 kv heads, or 1: MQA). */
export function randomLlama(seed: number, bias = false, be: Backend = refBackend, kvHeads = 2): Model {
  const rng = mulberry32(seed);
  const cfg: ModelConfig = {
    arch: bias ? 'qwen2' : 'llama', vocabSize: 61, hiddenSize: 48, intermediateSize: 72, numLayers: 2, numHeads: 6,
    rmsNormEps: 1e-6, ropePairing: 'half', ropeInvFreq: defaultInvFreq(10000, 12), ropeTheta: 10000, ropeScaling: null,
    maxPositions: 128, tieEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
    layers: [0, 1].map(() => ({ kind: 'gqa' as const, numKvHeads: kvHeads, headDim: 12, qkvBias: bias })),
  };
  const w = new Map<string, Tensor>();
  for (const s of modelTensors(cfg)) {
    const t = Tensor.zeros(s.shape);
    const isNorm = s.shape.length === 1 && !s.name.endsWith('bias');
    for (let i = 0; i < t.size; i++) t.data[i] = isNorm ? 1 + 0.1 * gaussian(rng) : 0.3 * gaussian(rng);
    w.set(s.name, t);
  }
  return Model.fromWeights(cfg, w, be);
}


// Model: a config plus its parameters as Vars (HF / DeepSeek-V3 names), bound to a backend.

import { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../tensor/backend.js';
import { Var } from '../autograd/var.js';
import { Functions } from '../autograd/functions.js';
import type { ModelConfig } from './config.js';
import { modelTensors } from './weights.js';
import { UserError } from '../errors.js';

export class Model {
  readonly F: Functions;
  /** Rope inverse frequencies as Float64Array, per layer (built once). */
  readonly invFreq: Float64Array[];

  constructor(
    readonly config: ModelConfig,
    readonly params: Map<string, Var>,
    readonly be: Backend,
  ) {
    this.F = new Functions(be);
    this.invFreq = config.layers.map((a) => Float64Array.from(a.kind === 'mla' ? a.ropeInvFreq : config.ropeInvFreq));
  }

  /** Build from named weights, checking every expected tensor is there with its shape. `source` names the origin. */
  static fromWeights(config: ModelConfig, weights: Map<string, Tensor>, be: Backend, source = 'model'): Model {
    const params = new Map<string, Var>();
    for (const spec of modelTensors(config)) {
      const t = weights.get(spec.name);
      if (!t) throw new UserError(`${source}: tensor ${spec.name}: missing (expected shape [${spec.shape.join(', ')}])`);
      if (t.size !== spec.shape.reduce((a, b) => a * b, 1) || t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
        throw new UserError(
          `${source}: tensor ${spec.name}: expected shape [${spec.shape.join(', ')}], found [${t.shape.join(', ')}]`,
        );
      }
      params.set(spec.name, Var.param(t.to(be.dtype)));
    }
    return new Model(config, params, be);
  }

  /** The parameter called `name`. */
  p(name: string): Var {
    const v = this.params.get(name);
    if (!v) throw new Error(`model has no parameter ${name}`);
    return v;
  }

  has(name: string): boolean {
    return this.params.has(name);
  }

  /** Current weights as plain tensors (shared buffers). */
  weights(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [k, v] of this.params) out.set(k, v.value);
    return out;
  }

  /** The output projection: lm_head, or the embedding when tied. */
  lmHead(): Var {
    return this.config.tieEmbeddings ? this.p('model.embed_tokens.weight') : this.p('lm_head.weight');
  }

  zeroGrad(): void {
    for (const v of this.params.values()) v.grad = null;
  }
}

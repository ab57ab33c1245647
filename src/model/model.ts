// Model: a config plus its parameters as Vars (HF / DeepSeek-V3 names), bound to a backend.
// Weight dtype: the projection matrices and the embedding (the weight operands of matmul and embedding) keep the
// dtype they were read in (bf16/f16 from a half checkpoint) when the backend reads that dtype natively; everything
// else (norms, biases, kv_b_proj, from which decode derives its absorbed matrices) becomes the backend's f32.

import { Tensor } from '../tensor/tensor.js';
import { isHalf } from '../tensor/storage.js';
import type { Backend } from '../tensor/backend.js';
import { Var } from '../autograd/var.js';
import { Functions } from '../autograd/functions.js';
import type { ModelConfig } from './config.js';
import { modelTensors } from './weights.js';
import { attentionKind, configProblems } from './attention/index.js';
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
    const problems = configProblems(config);
    if (problems.length) throw new UserError(`model config: ${problems.join('; ')}`);
    this.F = new Functions(be);
    this.invFreq = config.layers.map((a) => Float64Array.from(attentionKind(a).ropeInvFreq(config, a)));
  }

  /** Build from named weights, checking every expected tensor is there with its shape. `source` names the origin.
   *  weights 'file' (default) keeps half-precision matmul/embedding weights as they are where the backend supports
   *  them; 'f32' widens every weight to the backend's dtype (the memory of f32, the speed of the f32 kernels). */
  static fromWeights(config: ModelConfig, weights: Map<string, Tensor>, be: Backend, source = 'model', opts: { weights?: WeightDtypePolicy } = {}): Model {
    const policy = opts.weights ?? 'file';
    const params = new Map<string, Var>();
    for (const spec of modelTensors(config)) {
      const t = weights.get(spec.name);
      if (!t) throw new UserError(`${source}: tensor ${spec.name}: missing (expected shape [${spec.shape.join(', ')}])`);
      if (t.size !== spec.shape.reduce((a, b) => a * b, 1) || t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
        throw new UserError(
          `${source}: tensor ${spec.name}: expected shape [${spec.shape.join(', ')}], found [${t.shape.join(', ')}]`,
        );
      }
      params.set(spec.name, Var.param(keepsHalf(spec.name, t, be, policy) ? t : t.to(be.dtype)));
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

  /** The dtype of every parameter, with how many parameters have it (for reports). */
  weightDtypes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const v of this.params.values()) out.set(v.value.dtype, (out.get(v.value.dtype) ?? 0) + v.value.size);
    return out;
  }

  zeroGrad(): void {
    for (const v of this.params.values()) v.grad = null;
  }
}

/** 'file': keep half-precision matmul/embedding weights as read; 'f32': widen every weight to the backend dtype. */
export type WeightDtypePolicy = 'file' | 'f32';

/** Whether a weight stays in its half dtype: a projection (a matmul weight operand: *_proj, kv_a_proj_with_mqa,
 *  lm_head) or the embedding table, read natively by the backend in that dtype. kv_b_proj is excluded: decode
 *  permutes it into absorbed matrices. */
function keepsHalf(name: string, t: Tensor, be: Backend, policy: WeightDtypePolicy): boolean {
  if (policy === 'f32' || !isHalf(t.dtype)) return false;
  if (name.endsWith('kv_b_proj.weight')) return false;
  if (name === 'model.embed_tokens.weight') return be.supports('embedding', t.dtype) && be.supports('matmul', t.dtype);
  return /_proj(_with_mqa)?\.weight$|^lm_head\.weight$/.test(name) && be.supports('matmul', t.dtype);
}

// AdamW over a model's trainable parameters (the backend's fused adamw op), with global-norm gradient clipping.
// Moment buffers are f32 (the parameters' dtype), keyed by parameter name so they can be checkpointed.

import { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../tensor/backend.js';
import type { Var } from '../autograd/var.js';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const defaultAdamW: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 };

export class AdamW {
  /** Steps taken (bias correction uses it). */
  step = 0;
  readonly m = new Map<string, Tensor>();
  readonly v = new Map<string, Tensor>();

  constructor(
    readonly be: Backend,
    readonly params: Map<string, Var>,
    readonly cfg: AdamWConfig = defaultAdamW,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, Tensor.zeros(p.shape, p.value.dtype));
      this.v.set(name, Tensor.zeros(p.shape, p.value.dtype));
    }
  }

  /** √(Σ‖g‖²) over all parameters that have a gradient. */
  gradNorm(): number {
    let s = 0;
    for (const p of this.params.values()) if (p.grad) s += this.be.run('sumSquares', [p.grad], {})[0].data[0]!;
    return Math.sqrt(s);
  }

  /** Scale every gradient by `factor` (clipping, accumulation averaging). */
  scaleGrads(factor: number): void {
    for (const p of this.params.values()) if (p.grad) p.grad = this.be.run('affine', [p.grad], { a: factor, b: 0 })[0];
  }

  /** Release the moment buffers (the optimizer is unusable afterwards). */
  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }

  /** One AdamW update at learning rate lr; parameters without a gradient are left alone. */
  update(lr: number): void {
    this.step++;
    for (const [name, p] of this.params) {
      if (!p.grad) continue;
      this.be.run('adamw', [p.value, p.grad, this.m.get(name)!, this.v.get(name)!], {
        lr, beta1: this.cfg.beta1, beta2: this.cfg.beta2, eps: this.cfg.eps, weightDecay: this.cfg.weightDecay, step: this.step,
      });
    }
  }
}

/** Linear warmup to lr over `warmup` steps, then cosine decay to minRatio·lr at `total`. */
export function learningRate(step: number, total: number, lr: number, warmup: number, minRatio = 0.1): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * t)));
}

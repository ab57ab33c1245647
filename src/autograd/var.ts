// Var: a tensor on the tape. Reverse-mode autodiff: each Var made by a differentiable op remembers its parents and a
// closure that maps the output gradient to parent gradients. backward() walks the graph once in reverse topological
// order, ACCUMULATING into .grad (call zeroGrad between steps), then drops the closures so saved activations are freed.

import { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../tensor/backend.js';

export type BackwardFn = (grad: Tensor) => (Tensor | null)[];

export class Var {
  value: Tensor;
  grad: Tensor | null = null;
  readonly requiresGrad: boolean;
  parents: Var[];
  backwardFn: BackwardFn | null;

  constructor(value: Tensor, requiresGrad = false, parents: Var[] = [], backwardFn: BackwardFn | null = null) {
    this.value = value;
    this.requiresGrad = requiresGrad;
    this.parents = parents;
    this.backwardFn = backwardFn;
  }

  get shape(): readonly number[] {
    return this.value.shape;
  }

  /** A leaf that collects gradients (a trainable parameter). */
  static param(t: Tensor): Var {
    return new Var(t, true);
  }

  /** A constant (no gradient). */
  static const(t: Tensor): Var {
    return new Var(t, false);
  }
}

/** Whether new ops record backward closures (off inside noGrad). */
let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn without recording the tape (inference, evaluation). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Make the output Var of an op: records the backward only when some input needs a gradient. */
export function record(value: Tensor, inputs: Var[], backwardFn: BackwardFn): Var {
  if (!gradEnabled || !inputs.some((v) => v.requiresGrad)) return new Var(value, false);
  return new Var(value, true, inputs, backwardFn);
}

/** Backpropagate from a scalar (or from `seed` gradient), accumulating into every leaf's .grad. */
export function backward(be: Backend, out: Var, seed?: Tensor): void {
  const order: Var[] = [];
  const seen = new Set<Var>();
  // Iterative DFS (deep models would overflow the stack with recursion).
  const stack: [Var, number][] = [[out, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [v, i] = top;
    if (i === 0 && seen.has(v)) {
      stack.pop();
      continue;
    }
    seen.add(v);
    if (i < v.parents.length) {
      top[1]++;
      const p = v.parents[i]!;
      if (p.requiresGrad && !seen.has(p)) stack.push([p, 0]);
    } else {
      order.push(v);
      stack.pop();
    }
  }
  const grads = new Map<Var, Tensor>();
  grads.set(out, seed ?? Tensor.fill(out.shape, 1, out.value.dtype === 'f64' ? 'f64' : 'f32'));
  for (let i = order.length - 1; i >= 0; i--) {
    const v = order[i]!;
    const g = grads.get(v);
    grads.delete(v);
    if (!g) continue;
    if (!v.backwardFn) {
      v.grad = v.grad ? be.run('add', [v.grad, g], {})[0] : g;
      continue;
    }
    const pg = v.backwardFn(g);
    v.parents.forEach((p, j) => {
      const gj = pg[j];
      if (!gj || !p.requiresGrad) return;
      const prev = grads.get(p);
      grads.set(p, prev ? be.run('add', [prev, gj], {})[0] : gj);
    });
    // Free the saved activations of this node.
    v.backwardFn = null;
    v.parents = [];
  }
}

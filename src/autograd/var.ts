// Var: a tensor on the tape. Reverse-mode autodiff: each Var made by a differentiable op remembers its parents and a
// closure that maps the output gradient to parent gradients. backward() walks the graph once in reverse topological
// order, ACCUMULATING into .grad (call zeroGrad between steps).
// Memory: tensors only the tape holds are disposed by backward(): each node's private saved tensors (rmsnorm's rstd,
// attention's lse: `saved` in record) once its closure ran, and every intermediate gradient once consumed; the
// closures are dropped. Var values (activations) belong to whoever made them: the enclosing tidy() frees them.
// Without a tape (noGrad, or no input needs a gradient) the saved tensors are disposed at once.

import { Tensor } from '../tensor/tensor.js';
import { Storage, STORAGES, tidy } from '../tensor/storage.js';
import type { Backend } from '../tensor/backend.js';

export type BackwardFn = (grad: Tensor) => (Tensor | null)[];

export class Var {
  value: Tensor;
  grad: Tensor | null = null;
  readonly requiresGrad: boolean;
  parents: Var[];
  backwardFn: BackwardFn | null;
  /** Tensors only the backward closure reads (disposed after it ran). */
  saved: Tensor[] = [];

  constructor(value: Tensor, requiresGrad = false, parents: Var[] = [], backwardFn: BackwardFn | null = null) {
    this.value = value;
    this.requiresGrad = requiresGrad;
    this.parents = parents;
    this.backwardFn = backwardFn;
  }

  get shape(): readonly number[] {
    return this.value.shape;
  }

  /** The value's and gradient's storages (tidy keeps a returned Var's value and grad, not its graph). */
  [STORAGES](): Storage[] {
    return this.grad ? [this.value.storage, this.grad.storage] : [this.value.storage];
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

/** Make the output Var of an op: records the backward only when some input needs a gradient. `saved` are tensors
 *  the op made for its backward alone (disposed after the backward ran, or now when nothing is recorded). */
export function record(value: Tensor, inputs: Var[], backwardFn: BackwardFn, saved: Tensor[] = []): Var {
  if (!gradEnabled || !inputs.some((v) => v.requiresGrad)) {
    for (const t of saved) t.dispose();
    return new Var(value, false);
  }
  const v = new Var(value, true, inputs, backwardFn);
  v.saved = saved;
  return v;
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
  // Storages made here (gradients) with how many pending gradients use them; one reaching 0 is freed, unless it
  // became a leaf's .grad. Views (reshape) share a storage, so counting is per storage, not per tensor.
  const mine = new Set<Storage>();
  const uses = new Map<Storage, number>();
  const hold = (t: Tensor): void => {
    if (mine.has(t.storage)) uses.set(t.storage, (uses.get(t.storage) ?? 0) + 1);
  };
  const release = (t: Tensor): void => {
    const s = t.storage;
    if (!mine.has(s)) return;
    const n = (uses.get(s) ?? 0) - 1;
    uses.set(s, n);
    if (n <= 0) {
      s.dispose();
      mine.delete(s);
    }
  };
  const adopt = (t: Tensor): Tensor => {
    // A storage first seen here was made by a backward rule (fresh gradient); seed and user tensors are not ours.
    if (!seenStorage.has(t.storage)) {
      seenStorage.add(t.storage);
      mine.add(t.storage);
    }
    return t;
  };
  const seenStorage = new Set<Storage>();
  const grads = new Map<Var, Tensor>();
  const first = seed ?? adopt(Tensor.fill(out.shape, 1, out.value.dtype === 'f64' ? 'f64' : 'f32'));
  if (seed) seenStorage.add(seed.storage);
  hold(first);
  grads.set(out, first);
  for (let i = order.length - 1; i >= 0; i--) {
    const v = order[i]!;
    const g = grads.get(v);
    grads.delete(v);
    if (!g) continue;
    if (!v.backwardFn) {
      if (v.grad) {
        const sum = be.run('add', [v.grad, g], {})[0];
        v.grad = sum;
        release(g);
      } else {
        // g becomes the leaf's gradient: never freed here.
        v.grad = g;
        mine.delete(g.storage);
      }
      continue;
    }
    // tidy: temporaries a rule makes and does not return are freed at once.
    const bw = v.backwardFn;
    const pg = tidy(() => bw(g)).map((t) => (t ? adopt(t) : t));
    for (const t of pg) if (t) hold(t);
    v.parents.forEach((p, j) => {
      const gj = pg[j];
      if (!gj) return;
      if (!p.requiresGrad) {
        release(gj);
        return;
      }
      const prev = grads.get(p);
      if (prev) {
        const sum = adopt(be.run('add', [prev, gj], {})[0]);
        hold(sum);
        release(prev);
        release(gj);
        grads.set(p, sum);
      } else {
        grads.set(p, gj);
      }
    });
    release(g);
    // Free what only the tape held: the closure and this node's private saved tensors.
    for (const t of v.saved) t.dispose();
    v.saved = [];
    v.backwardFn = null;
    v.parents = [];
  }
}

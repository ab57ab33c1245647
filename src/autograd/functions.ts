// Differentiable functions over Vars: each runs a backend op forward and records its backward rule.
// Shape legend: B batch, T positions, S key positions, H heads, Hkv kv heads, D head dim, N rows, C width, V vocab.

import { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../tensor/backend.js';
import type { RopePairing } from '../tensor/ops.js';
import { Var, record } from './var.js';

export class Functions {
  constructor(readonly be: Backend) {}

  /** a (…, M, K) · b (…, K, N), with optional transposes; b may be an unbatched weight. */
  matmul(a: Var, b: Var, transA = false, transB = false): Var {
    const be = this.be;
    const [y] = be.run('matmul', [a.value, b.value], { transA, transB });
    return record(y, [a, b], (g) => {
      // y = op(a)·op(b): d op(a) = g·op(b)ᵀ, d op(b) = op(a)ᵀ·g.
      let da: Tensor | null = null;
      let db: Tensor | null = null;
      if (a.requiresGrad) {
        da = transA
          ? be.run('matmul', [b.value, g], { transA: transB, transB: true })[0]
          : be.run('matmul', [g, b.value], { transA: false, transB: !transB })[0];
      }
      if (b.requiresGrad) {
        const unbatched = b.value.rank === 2 && a.value.rank > 2;
        // Fold batch axes into rows when b is shared by the batch.
        const a2 = unbatched ? a.value.reshape([-1, a.value.dim(-1)]) : a.value;
        const g2 = unbatched ? g.reshape([-1, g.dim(-1)]) : g;
        if (unbatched && transA) throw new Error('matmul backward: transA with an unbatched b is not supported');
        db = transB
          ? be.run('matmul', [g2, a2], { transA: true, transB: transA })[0]
          : be.run('matmul', [a2, g2], { transA: !transA, transB: false })[0];
      }
      return [da, db];
    });
  }

  /** x (…, in) · Wᵀ (W: (out, in)) + bias (out): the torch.nn.Linear convention. */
  linear(x: Var, w: Var, bias?: Var | null): Var {
    const y = this.matmul(x, w, false, true);
    return bias ? this.add(y, bias) : y;
  }

  private broadcastBinary(op: 'add' | 'sub' | 'mul', a: Var, b: Var): Var {
    const be = this.be;
    const [y] = be.run(op, [a.value, b.value], {});
    return record(y, [a, b], (g) => {
      const reduce = (t: Tensor, shape: readonly number[]): Tensor =>
        sameShape(t.shape, shape) ? t : be.run('sumTo', [t], { shape })[0].reshape(shape);
      let ga: Tensor | null = null;
      let gb: Tensor | null = null;
      if (op === 'mul') {
        if (a.requiresGrad) ga = reduce(be.run('mul', [g, b.value], {})[0], a.shape);
        if (b.requiresGrad) gb = reduce(be.run('mul', [g, a.value], {})[0], b.shape);
      } else {
        if (a.requiresGrad) ga = reduce(g, a.shape);
        if (b.requiresGrad) gb = reduce(op === 'sub' ? be.run('affine', [g], { a: -1, b: 0 })[0] : g, b.shape);
      }
      return [ga, gb];
    });
  }

  add(a: Var, b: Var): Var {
    return this.broadcastBinary('add', a, b);
  }

  sub(a: Var, b: Var): Var {
    return this.broadcastBinary('sub', a, b);
  }

  mul(a: Var, b: Var): Var {
    return this.broadcastBinary('mul', a, b);
  }

  /** a·x + b with scalars. */
  affine(x: Var, a: number, b = 0): Var {
    const be = this.be;
    const [y] = be.run('affine', [x.value], { a, b });
    return record(y, [x], (g) => [be.run('affine', [g], { a, b: 0 })[0]]);
  }

  /** Σ of all elements → shape []. */
  sum(x: Var): Var {
    const be = this.be;
    const [y] = be.run('sumTo', [x.value], { shape: [] });
    return record(y.reshape([]), [x], (g) => [be.run('add', [Tensor.zeros(x.shape, x.value.dtype), g.reshape([])], {})[0]]);
  }

  /** Same values, new shape. */
  reshape(x: Var, shape: readonly number[]): Var {
    const y = x.value.reshape(shape);
    return record(y, [x], (g) => [g.reshape(x.shape)]);
  }

  permute(x: Var, perm: readonly number[]): Var {
    const be = this.be;
    const inv: number[] = [];
    perm.forEach((p, i) => (inv[p] = i));
    const [y] = be.run('permute', [x.value], { perm });
    return record(y, [x], (g) => [be.run('permute', [g], { perm: inv })[0]]);
  }

  /** Columns [start, start+len) of the last axis. */
  narrow(x: Var, start: number, len: number): Var {
    const be = this.be;
    const total = x.value.dim(-1);
    const [y] = be.run('narrow', [x.value], { start, len });
    return record(y, [x], (g) => [be.run('pad', [g], { start, total })[0]]);
  }

  /** Join along the last axis. */
  concat(a: Var, b: Var): Var {
    const be = this.be;
    const da = a.value.dim(-1);
    const db = b.value.dim(-1);
    const [y] = be.run('concat', [a.value, b.value], {});
    return record(y, [a, b], (g) => [
      a.requiresGrad ? be.run('narrow', [g], { start: 0, len: da })[0] : null,
      b.requiresGrad ? be.run('narrow', [g], { start: da, len: db })[0] : null,
    ]);
  }

  /** Repeat a size-1 axis to `shape` (broadcast copy). */
  expand(x: Var, shape: readonly number[]): Var {
    return this.add(Var.const(Tensor.zeros(shape, x.value.dtype)), x);
  }

  /** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w. */
  rmsnorm(x: Var, w: Var, eps: number): Var {
    const be = this.be;
    const c = x.value.dim(-1);
    const x2 = x.value.reshape([-1, c]);
    const [y, rstd] = be.run('rmsnorm', [x2, w.value], { eps });
    return record(y.reshape(x.shape), [x, w], (g) => {
      const [dx, dw] = be.run('rmsnormBackward', [g.reshape([-1, c]), x2, w.value, rstd], {});
      return [dx.reshape(x.shape), dw];
    }, [rstd]);
  }

  /** Rotary embedding of x (B, T, H, D) on the columns [start, start + 2·invFreq.length) of each head. */
  rope(x: Var, positions: Int32Array, invFreq: Float64Array, pairing: RopePairing, start = 0): Var {
    const be = this.be;
    const [y] = be.run('rope', [x.value], { start, invFreq, positions, pairing, inverse: false });
    return record(y, [x], (g) => [be.run('rope', [g], { start, invFreq, positions, pairing, inverse: true })[0]]);
  }

  /** Causal attention over whole sequences: q (B, T, H, Dk), k (B, T, Hkv, Dk), v (B, T, Hkv, Dv) → (B, T, H, Dv). */
  attention(q: Var, k: Var, v: Var, scale: number): Var {
    const be = this.be;
    const S = k.value.dim(1);
    const [o, lse] = be.run('attention', [q.value, k.value, v.value], {
      scale,
      qOffset: S - q.value.dim(1),
      kvLen: S,
      vDim: v.value.dim(-1),
    });
    return record(o, [q, k, v], (g) =>
      be.run('attentionBackward', [g, q.value, k.value, v.value, o, lse], { scale, qOffset: S - q.value.dim(1) }),
    [lse]);
  }

  /** silu(g) · u. */
  swiglu(gate: Var, up: Var): Var {
    const be = this.be;
    const [y] = be.run('swiglu', [gate.value, up.value], {});
    return record(y, [gate, up], (g) => be.run('swigluBackward', [g, gate.value, up.value], {}));
  }

  /** Rows of table (V, C) at ids → (ids.length, C). */
  embedding(table: Var, ids: Int32Array): Var {
    const be = this.be;
    const vocab = table.value.dim(0);
    const [y] = be.run('embedding', [table.value], { ids });
    return record(y, [table], (g) => [be.run('embeddingBackward', [g], { ids, vocab })[0]]);
  }

  /** Per-row cross-entropy of logits (N, V) against targets (−1 = ignored) → (N). */
  crossEntropy(logits: Var, targets: Int32Array): Var {
    const be = this.be;
    const [y] = be.run('crossEntropy', [logits.value], { targets });
    return record(y, [logits], (g) => [be.run('crossEntropyBackward', [logits.value, g], { targets })[0]]);
  }

  /** Per-row KL(p_teacher ‖ p_student) at temperature τ → (N); the teacher is a constant. */
  klDiv(student: Var, teacher: Tensor, temperature: number): Var {
    const be = this.be;
    const [y] = be.run('klDiv', [student.value, teacher], { temperature });
    return record(y, [student], (g) => [be.run('klDivBackward', [student.value, teacher, g], { temperature })[0]]);
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

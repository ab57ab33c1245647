// Shape, dtype and parameter checks for every op, run before a kernel so kernels may assume valid input.
// Backend-neutral: any host backend can call validateOp with its own name so errors read "cpu.matmul: …".
// Shape legend as in tensor/ops.ts. Rules beyond the op spec (kept as loose as the spec allows):
//  - every tensor input of one op has the same dtype, f32 or f64 (a mix is almost always a caller bug), except the
//    weight slots (WEIGHT_SLOT: matmul's b, embedding's table), which may also be stored bf16/f16;
//  - every input is a live host tensor (not disposed; a device tensor must be downloaded first);
//  - rmsnorm accepts x (…, C) with rstd (…), the spec's (N, C) being the rank-2 case;
//  - rope's positions has one entry per query position T (shared by the batch).

import { Tensor } from '../../tensor/tensor.js';
import { broadcastShape, OP_NAMES } from '../../tensor/ops.js';
import type { OpInputs, OpName, OpParams } from '../../tensor/ops.js';

type Fail = (msg: string) => never;
type Validators = { [O in OpName]: (inputs: OpInputs<O>, params: OpParams<O>, fail: Fail) => void };

/** "[2, 3, 4]" */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function isInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x);
}

function isFinite(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

/** Every id an integer in [0, n). */
function checkIds(ids: Int32Array, n: number, what: string, fail: Fail): void {
  if (!(ids instanceof Int32Array)) fail(`${what} must be an Int32Array`);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= n) fail(`${what}[${i}] = ${id} is outside [0, ${n})`);
  }
}

function checkRank(t: Tensor, name: string, rank: number, legend: string, fail: Fail): void {
  if (t.rank !== rank) fail(`${name} must be ${legend}, got ${fmtShape(t.shape)}`);
}

function checkShape(t: Tensor, name: string, want: readonly number[], fail: Fail): void {
  if (!sameShape(t.shape, want)) fail(`${name} must have shape ${fmtShape(want)}, got ${fmtShape(t.shape)}`);
}

/** Leading axes of a and b equal (for ops acting on the last axis). */
function checkLeading(a: Tensor, b: Tensor, names: string, fail: Fail): void {
  if (a.rank !== b.rank || !sameShape(a.shape.slice(0, -1), b.shape.slice(0, -1))) {
    fail(`${names} must agree on all but the last axis, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  }
}

function checkBroadcast(a: Tensor, b: Tensor, fail: Fail): void {
  try {
    broadcastShape(a.shape, b.shape);
  } catch {
    fail(`cannot broadcast a ${fmtShape(a.shape)} with b ${fmtShape(b.shape)}`);
  }
}

function checkLossRows(logits: Tensor, name: string, fail: Fail): [number, number] {
  checkRank(logits, name, 2, '(N, V)', fail);
  return [logits.dim(0), logits.dim(1)];
}

/** Number of tensor inputs of each op (checked at run time: a JS caller can pass anything). */
const INPUT_COUNTS: { [O in OpName]: OpInputs<O>['length'] } = {
  matmul: 2, add: 2, sub: 2, mul: 2, affine: 1, sumTo: 1, sumSquares: 1, permute: 1, narrow: 1, pad: 1, concat: 2,
  rmsnorm: 2, rmsnormBackward: 4, rope: 1, attention: 3, attentionBackward: 6, attentionDistance: 2, swiglu: 2, swigluBackward: 3,
  embedding: 1, embeddingBackward: 1, crossEntropy: 1, crossEntropyBackward: 2, klDiv: 2, klDivBackward: 3,
  adamw: 4, writeAt: 2,
};

/** The input that may be a stored weight in bf16/f16 (read with f32/f64 accumulation), per op. */
export const WEIGHT_SLOT: Partial<Record<OpName, number>> = { matmul: 1, embedding: 0 };

const OP_SET: ReadonlySet<string> = new Set(OP_NAMES);

const validators: Validators = {
  matmul([a, b], { transA, transB }, fail) {
    // Built only for a message: this runs before every matmul, ~200 times per decode step.
    const desc = (): string => `a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)} (transA=${transA}, transB=${transB})`;
    if (typeof transA !== 'boolean' || typeof transB !== 'boolean') fail(`transA and transB must be booleans`);
    if (a.rank < 2 || b.rank < 2) fail(`${desc()}: both inputs need rank ≥ 2`);
    if (b.rank !== 2 && !sameShape(a.shape.slice(0, -2), b.shape.slice(0, -2))) {
      fail(`${desc()}: b must have the batch axes of a or none`);
    }
    const Ka = transA ? a.dim(-2) : a.dim(-1);
    const Kb = transB ? b.dim(-1) : b.dim(-2);
    if (Ka !== Kb) fail(`${desc()}: contracted sizes ${Ka} and ${Kb} differ`);
  },
  add([a, b], _p, fail) {
    checkBroadcast(a, b, fail);
  },
  sub([a, b], _p, fail) {
    checkBroadcast(a, b, fail);
  },
  mul([a, b], _p, fail) {
    checkBroadcast(a, b, fail);
  },
  affine(_i, { a, b }, fail) {
    if (typeof a !== 'number' || typeof b !== 'number') fail(`a and b must be numbers, got ${a} and ${b}`);
  },
  sumTo([x], { shape }, fail) {
    const desc = `x ${fmtShape(x.shape)} to ${fmtShape(shape)}`;
    if (!shape.every((d) => isInt(d) && d >= 0)) fail(`${desc}: shape must hold non-negative integers`);
    if (shape.length > x.rank) fail(`${desc}: target has more axes than x`);
    const lead = x.rank - shape.length;
    shape.forEach((d, i) => {
      const xd = x.shape[lead + i];
      if (d !== 1 && d !== xd) fail(`${desc}: axis ${i} of the target is neither 1 nor ${xd}`);
    });
  },
  sumSquares() {},
  permute([x], { perm }, fail) {
    const ok =
      perm.length === x.rank &&
      perm.every((p) => isInt(p) && p >= 0 && p < x.rank) &&
      new Set(perm).size === perm.length;
    if (!ok) fail(`perm [${perm.join(', ')}] is not a permutation of the ${x.rank} axes of x ${fmtShape(x.shape)}`);
  },
  narrow([x], { start, len }, fail) {
    if (x.rank < 1) fail(`x must have rank ≥ 1, got ${fmtShape(x.shape)}`);
    if (!isInt(start) || !isInt(len) || start < 0 || len < 0 || start + len > x.dim(-1)) {
      fail(`columns [${start}, ${start + len}) do not fit the last axis of x ${fmtShape(x.shape)}`);
    }
  },
  pad([x], { start, total }, fail) {
    if (x.rank < 1) fail(`x must have rank ≥ 1, got ${fmtShape(x.shape)}`);
    if (!isInt(start) || !isInt(total) || start < 0 || start + x.dim(-1) > total) {
      fail(`x ${fmtShape(x.shape)} placed at column ${start} does not fit in ${total} columns`);
    }
  },
  concat([a, b], _p, fail) {
    if (a.rank < 1) fail(`a must have rank ≥ 1, got ${fmtShape(a.shape)}`);
    checkLeading(a, b, 'a and b', fail);
  },
  rmsnorm([x, w], { eps }, fail) {
    if (x.rank < 1) fail(`x must be (N, C), got ${fmtShape(x.shape)}`);
    if (w.rank !== 1 || w.dim(0) !== x.dim(-1)) checkShape(w, `w (C) for x ${fmtShape(x.shape)}`, [x.dim(-1)], fail);
    if (!isFinite(eps) || eps < 0) fail(`eps must be a finite number ≥ 0, got ${eps}`);
  },
  rmsnormBackward([dy, x, w, rstd], _p, fail) {
    if (x.rank < 1) fail(`x must be (N, C), got ${fmtShape(x.shape)}`);
    checkShape(dy, 'dy (like x)', x.shape, fail);
    checkShape(w, `w (C) for x ${fmtShape(x.shape)}`, [x.dim(-1)], fail);
    checkShape(rstd, `rstd (N) for x ${fmtShape(x.shape)}`, x.shape.slice(0, -1), fail);
  },
  rope([x], { start, invFreq, positions, pairing, inverse }, fail) {
    checkRank(x, 'x', 4, '(B, T, H, D)', fail);
    if (!(invFreq instanceof Float64Array)) fail(`invFreq must be a Float64Array`);
    if (!(positions instanceof Int32Array)) fail(`positions must be an Int32Array`);
    if (pairing !== 'half' && pairing !== 'adjacent') {
      fail(`pairing must be 'half' or 'adjacent', got '${String(pairing)}'`);
    }
    if (typeof inverse !== 'boolean') fail(`inverse must be a boolean`);
    const D = x.dim(3);
    const P = invFreq.length;
    if (!isInt(start) || start < 0 || start + 2 * P > D) {
      const cols = `[${start}, ${start + 2 * P}) (${P} pairs)`;
      fail(`rotated columns ${cols} do not fit head dim ${D} of x ${fmtShape(x.shape)}`);
    }
    if (positions.length !== x.dim(1)) {
      fail(`positions has ${positions.length} entries, x ${fmtShape(x.shape)} has T = ${x.dim(1)}`);
    }
  },
  attention([q, k, v], { scale, qOffset, kvLen, vDim }, fail) {
    checkRank(q, 'q', 4, '(B, T, H, Dk)', fail);
    checkRank(k, 'k', 4, '(B, S, Hkv, Dk)', fail);
    checkRank(v, 'v', 4, '(B, S, Hkv, Dvs)', fail);
    const desc = (): string => `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`;
    const [B, , H, Dk] = q.shape as [number, number, number, number];
    const [Bk, S, Hkv, Dkk] = k.shape as [number, number, number, number];
    if (Bk !== B || v.dim(0) !== B) fail(`${desc()}: batch sizes differ`);
    if (Dkk !== Dk) fail(`${desc()}: q and k head dims differ`);
    if (v.dim(1) !== S || v.dim(2) !== Hkv) fail(`${desc()}: k and v must agree on (B, S, Hkv)`);
    if (Hkv < 1 || H < 1) fail(`${desc()}: need at least one head`);
    if (!isFinite(scale)) fail(`scale must be finite, got ${scale}`);
    if (!isInt(qOffset) || qOffset < 0) fail(`qOffset must be an integer ≥ 0, got ${qOffset}`);
    if (!isInt(kvLen) || kvLen < 1 || kvLen > S) fail(`${desc()}: kvLen ${kvLen} must be in [1, S = ${S}]`);
    if (!isInt(vDim) || vDim < 0 || vDim > v.dim(3)) fail(`${desc()}: vDim ${vDim} must be in [0, Dvs = ${v.dim(3)}]`);
  },
  attentionDistance([q, k], { scale, qOffset }, fail) {
    checkRank(q, 'q', 4, '(B, T, H, Dk)', fail);
    checkRank(k, 'k', 4, '(B, S, Hkv, Dk)', fail);
    const desc = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}`;
    const [B, T, H, Dk] = q.shape as [number, number, number, number];
    const [Bk, S, Hkv, Dkk] = k.shape as [number, number, number, number];
    if (Bk !== B) fail(`${desc}: batch sizes differ`);
    if (Dkk !== Dk) fail(`${desc}: q and k head dims differ`);
    if (Hkv < 1 || H < 1) fail(`${desc}: need at least one head`);
    if (!isFinite(scale)) fail(`scale must be finite, got ${scale}`);
    if (!isInt(qOffset) || qOffset < 0) fail(`qOffset must be an integer ≥ 0, got ${qOffset}`);
    if (qOffset + T > S) fail(`${desc}: qOffset ${qOffset} + T ${T} exceeds the S = ${S} key rows`);
  },
  attentionBackward([dout, q, k, v, o, lse], { scale, qOffset }, fail) {
    // Training-time attention reads every key row and value column; the rank guards let attention's own check
    // report a wrong rank before dim() is reached.
    const kvLen = k.rank === 4 ? k.dim(1) : 1;
    const vDim = v.rank === 4 ? v.dim(3) : 0;
    validators.attention([q, k, v], { scale, qOffset, kvLen, vDim }, fail);
    const [B, T, H] = q.shape as [number, number, number, number];
    checkShape(dout, 'dout (B, T, H, Dv)', [B, T, H, v.dim(3)], fail);
    checkShape(o, 'o (B, T, H, Dv)', [B, T, H, v.dim(3)], fail);
    checkShape(lse, 'lse (B, H, T)', [B, H, T], fail);
  },
  swiglu([g, u], _p, fail) {
    checkShape(u, `u (like g ${fmtShape(g.shape)})`, g.shape, fail);
  },
  swigluBackward([dy, g, u], _p, fail) {
    checkShape(u, `u (like g ${fmtShape(g.shape)})`, g.shape, fail);
    checkShape(dy, `dy (like g ${fmtShape(g.shape)})`, g.shape, fail);
  },
  embedding([table], { ids }, fail) {
    checkRank(table, 'table', 2, '(V, C)', fail);
    checkIds(ids, table.dim(0), 'ids', fail);
  },
  embeddingBackward([dy], { ids, vocab }, fail) {
    checkRank(dy, 'dy', 2, '(N, C)', fail);
    if (!isInt(vocab) || vocab < 1) fail(`vocab must be a positive integer, got ${vocab}`);
    if (ids.length !== dy.dim(0)) fail(`ids has ${ids.length} entries, dy ${fmtShape(dy.shape)} has N = ${dy.dim(0)}`);
    checkIds(ids, vocab, 'ids', fail);
  },
  crossEntropy([logits], { targets }, fail) {
    const [N, V] = checkLossRows(logits, 'logits', fail);
    checkTargets(targets, N, V, fail);
  },
  crossEntropyBackward([logits, dloss], { targets }, fail) {
    const [N, V] = checkLossRows(logits, 'logits', fail);
    checkShape(dloss, 'dloss (N)', [N], fail);
    checkTargets(targets, N, V, fail);
  },
  klDiv([student, teacher], { temperature }, fail) {
    checkLossRows(student, 'student', fail);
    checkShape(teacher, 'teacher (like student)', student.shape, fail);
    if (!isFinite(temperature) || temperature <= 0) fail(`temperature must be > 0, got ${temperature}`);
  },
  klDivBackward([student, teacher, dloss], { temperature }, fail) {
    validators.klDiv([student, teacher], { temperature }, fail);
    checkShape(dloss, 'dloss (N)', [student.dim(0)], fail);
  },
  adamw([param, grad, m, v], { lr, beta1, beta2, eps, weightDecay, step }, fail) {
    checkShape(grad, `grad (like param ${fmtShape(param.shape)})`, param.shape, fail);
    checkShape(m, `m (like param ${fmtShape(param.shape)})`, param.shape, fail);
    checkShape(v, `v (like param ${fmtShape(param.shape)})`, param.shape, fail);
    if (![lr, eps, weightDecay].every(isFinite)) fail(`lr, eps and weightDecay must be finite numbers`);
    if (!isFinite(beta1) || !isFinite(beta2) || beta1 < 0 || beta1 >= 1 || beta2 < 0 || beta2 >= 1) {
      fail(`beta1 and beta2 must lie in [0, 1), got ${beta1} and ${beta2}`);
    }
    if (!isInt(step) || step < 1) fail(`step counts from 1, got ${step}`);
  },
  writeAt([dst, src], { offset, blocks = 1, stride = 0 }, fail) {
    if (!isInt(blocks) || blocks < 1 || src.size % blocks !== 0) fail(`blocks ${blocks} must be a positive divisor of src.size ${src.size}`);
    const n = src.size / blocks;
    if (blocks > 1 && (!isInt(stride) || stride < n)) fail(`stride ${stride} must be an integer ≥ the piece size ${n}`);
    const end = offset + (blocks - 1) * stride + n;
    if (!isInt(offset) || offset < 0 || end > dst.size) {
      const what = `src ${fmtShape(src.shape)} (${blocks} × ${n} values) at offset ${offset} stride ${stride}`;
      fail(`${what} does not fit dst ${fmtShape(dst.shape)} (${dst.size} values)`);
    }
  },
};

function checkTargets(targets: Int32Array, N: number, V: number, fail: Fail): void {
  if (!(targets instanceof Int32Array)) fail(`targets must be an Int32Array`);
  if (targets.length !== N) fail(`targets has ${targets.length} entries, logits has N = ${N} rows`);
  for (let n = 0; n < N; n++) {
    if (targets[n]! >= V) fail(`targets[${n}] = ${targets[n]} is ≥ V = ${V} (use a negative target to ignore a row)`);
  }
}

/** Throws `${backend}.${op}: …` when the inputs or params do not fit the op's spec in tensor/ops.ts. */
export function validateOp<O extends OpName>(backend: string, op: O, inputs: OpInputs<O>, params: OpParams<O>): void {
  const fail: Fail = (msg) => {
    throw new Error(`${backend}.${op}: ${msg}`);
  };
  // Plain loops: this runs before every op of every backend (~500 per decode step of a 30-layer model).
  if (!OP_SET.has(op)) fail(`unknown op`);
  const list = inputs as readonly unknown[];
  if (!Array.isArray(list)) fail(`inputs must be an array of tensors`);
  if (list.length !== INPUT_COUNTS[op]) fail(`expects ${INPUT_COUNTS[op]} input tensors, got ${list.length}`);
  for (let i = 0; i < list.length; i++) {
    if (!(list[i] instanceof Tensor)) fail(`input ${i} is not a Tensor`);
  }
  const tensors = list as readonly Tensor[];
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    if (t.disposed) fail(`input ${i} ${fmtShape(t.shape)} was used after dispose()`);
    if (!t.storage.isHost) fail(`input ${i} lives on ${t.storage.pool.name}: download() it first`);
  }
  const weightSlot = WEIGHT_SLOT[op];
  // The activations' dtype: the first input that is not the weight slot.
  const dtype = tensors[weightSlot === 0 ? 1 : 0]?.dtype ?? tensors[0]?.dtype;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    const half = t.dtype === 'bf16' || t.dtype === 'f16';
    if (half && i !== weightSlot) {
      fail(`input ${i} is ${t.dtype}: ${weightSlot === undefined ? 'this op takes f32/f64 inputs only' : `only input ${weightSlot} (the weight) may be bf16/f16`}`);
    }
    if (!half && t.dtype !== dtype) fail(`input ${i} is ${t.dtype} but input ${i === 0 ? 1 : 0} is ${dtype}: all inputs must share a dtype`);
  }
  if (params === null || typeof params !== 'object') fail(`params must be an object`);
  (validators[op])(inputs, params, fail);
}

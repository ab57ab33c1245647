// backends/ref: the plain-TypeScript backend, float64 accumulation: the specification every other backend is tested
// against. One file per op family (matmul, elementwise, layout, norm, rope, attention, swiglu, embedding, losses,
// optim), forward beside backward; validate.ts checks shapes, dtypes and params before any kernel runs.
// Kernels return fresh tensors with the dtype of the activations (f32 or f64) except the in-place adamw/writeAt;
// matmul's weight operand and embedding's table may be stored bf16/f16 (widened exactly, float64 accumulation).
// Buffers are typed arrays charged to this backend's pool (backends/host.ts).

import type { Backend } from '../../tensor/backend.js';
import type { DType } from '../../tensor/tensor.js';
import { BufferPool, isHalf, withPool } from '../../tensor/storage.js';
import { hostMemory } from '../host.js';
import { OP_NAMES } from '../../tensor/ops.js';
import type { Kernels, OpInputs, OpName, OpOutputs, OpParams } from '../../tensor/ops.js';
import { tsLinalg } from '../../linalg/ts-linalg.js';
import { attention, attentionBackward, attentionDistance } from './attention.js';
import { add, affine, mul, sub, sumSquares, sumTo } from './elementwise.js';
import { embedding, embeddingBackward } from './embedding.js';
import { concat, narrow, pad, permute, writeAt } from './layout.js';
import { crossEntropy, crossEntropyBackward, klDiv, klDivBackward } from './losses.js';
import { matmul } from './matmul.js';
import { rmsnorm, rmsnormBackward } from './norm.js';
import { adamw } from './optim.js';
import { rope } from './rope.js';
import { swiglu, swigluBackward } from './swiglu.js';
import { WEIGHT_SLOT, validateOp } from './validate.js';

/** Every op's reference kernel. Kernels assume validated inputs: call them through refBackend.run unless the
 *  caller has already run validateOp (a backend delegating to ref may do that once). */
export const refKernels: Kernels = {
  matmul,
  add,
  sub,
  mul,
  affine,
  sumTo,
  sumSquares,
  permute,
  narrow,
  pad,
  concat,
  rmsnorm,
  rmsnormBackward,
  rope,
  attention,
  attentionBackward,
  attentionDistance,
  swiglu,
  swigluBackward,
  embedding,
  embeddingBackward,
  crossEntropy,
  crossEntropyBackward,
  klDiv,
  klDivBackward,
  adamw,
  writeAt,
};

/** Owner of the ref backend's buffers. */
export const refPool = new BufferPool('ref', true);

export const refBackend: Backend = {
  name: 'ref',
  // Activations default to f32 like the other backends; f64 tensors run too (gradient checks).
  dtype: 'f32',
  ...hostMemory(refPool),
  supports(op: OpName, dtype: DType): boolean {
    if (!(OP_NAMES as readonly string[]).includes(op)) return false;
    return isHalf(dtype) ? WEIGHT_SLOT[op] !== undefined : true;
  },
  run<O extends OpName>(op: O, inputs: OpInputs<O>, params: OpParams<O>): OpOutputs<O> {
    validateOp('ref', op, inputs, params);
    // The mapped Kernels type cannot be indexed by a generic O without widening; the table is complete by its type.
    const kernel = refKernels[op] as (i: OpInputs<O>, p: OpParams<O>) => OpOutputs<O>;
    return withPool(refPool, () => kernel(inputs, params));
  },
  linalg: tsLinalg,
  threads: 1,
};

export { validateOp } from './validate.js';

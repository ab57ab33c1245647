// Storage dtypes of checkpoint files (BF16, IEEE F16) ↔ f32 working precision. The conversions live in the engine
// layer (tensor/half.ts: half-precision tensors use them); this module keeps the io/ names.

export * from '../tensor/half.js';

// Tensor-name prefixes (HF / DeepSeek-V3 layout). A leaf module: the attention kinds and weights.ts both use it.

export const layerPrefix = (i: number): string => `model.layers.${i}`;

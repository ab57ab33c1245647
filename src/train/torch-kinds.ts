// Which attention kinds the PyTorch engine (python/mla_torch, `distill --engine torch`) runs: null, or why not. A
// model with a kind it lacks is refused here in one line, before Python starts (its own table, mla_torch/model.py
// ATTENTION_KINDS, would only say the kind has no module). A new kind adds its entry (the mapped type asks).

import type { ModelConfig } from '../model/config.js';
import type { AttentionKindName } from '../model/attention/index.js';
import { UserError } from '../errors.js';

export const TORCH_KINDS: { [K in AttentionKindName]: string | null } = {
  gqa: null,
  mla: null,
  xkv:
    "xKV layers (convert --share-latent) read an earlier layer's latent within the forward pass, and the PyTorch engine's " +
    'model (python/mla_torch) computes each layer on its own; distil this student with the TypeScript engine (--engine cpu)',
};

/** A UserError naming the layers and why when the torch engine cannot run a model of `role` (teacher, student). */
export function assertTorchKinds(cfg: ModelConfig, role: string): void {
  const bad = cfg.layers.flatMap((a, i) => (TORCH_KINDS[a.kind] === null ? [] : [i]));
  if (bad.length === 0) return;
  throw new UserError(`--engine torch: the ${role}'s layer(s) ${bad.join(', ')}: ${TORCH_KINDS[cfg.layers[bad[0]!]!.kind]}`);
}

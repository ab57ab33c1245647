// Export of xKV layers (a group of MLA layers sharing one latent cache): refused. Every stock engine gives each
// layer its own latent: llama.cpp's deepseek2 reads attn_kv_a_mqa per block, DeepSeek-V3 (transformers, vLLM,
// SGLang) kv_a_proj_with_mqa per layer, and none reads another layer's latent cache.

import { UserError } from '../../errors.js';
import type { XkvAttention } from '../../model/config.js';
import { layerPrefix } from '../../model/weights.js';
import type { ExportKind } from './index.js';

/** Why no stock engine runs an xKV layer. */
export const XKV_REFUSED =
  "reads the latent of an earlier layer (xKV, convert --share-latent), but no stock engine shares a latent across layers: llama.cpp's " +
  'deepseek2 and DeepSeek-V3 (transformers, vLLM, SGLang) give every layer its own kv_a_proj_with_mqa and latent cache; run it with mla ' +
  '(generate, ppl, eval read the native layout), or convert without --share-latent for an export';

export const xkv: ExportKind<XkvAttention> = {
  refused: XKV_REFUSED,

  gguf(_cfg, _weights, opts) {
    throw new UserError(`${opts.source}: cannot export to GGUF: ${XKV_REFUSED}`);
  },

  // o_proj adds into the residual stream; q_a_proj feeds q_a_layernorm. The latent is the group's first layer's
  // (its rows are that layer's entry); k_rope_proj reads the normalised input and is not normalised.
  normEpsScaled(_cfg, i, a) {
    const p = `${layerPrefix(i)}.self_attn`;
    const out = [{ name: `${p}.o_proj.weight` }];
    if (a.qRank !== null) out.push({ name: `${p}.q_a_proj.weight` });
    return out;
  },
};

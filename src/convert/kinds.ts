// The convert job's part of each attention kind: what a teacher layer of the kind is as a conversion source. The
// job factorises GQA/MHA attention (keys and values per kv head) into MLA; a layer of a kind that conversion
// produces is refused with the reason. A new kind adds its entry here (the mapped type makes a missing one a compile
// error): its source geometry if the job can convert it, else why not.

import type { GqaAttention, LayerAttention } from '../model/config.js';
import type { AttentionKindName, AttentionOf } from '../model/attention/index.js';
import { UserError } from '../errors.js';

/** A kind as a conversion source: its GQA geometry (per-head keys and values), or why it cannot be one. */
export type SourceKind<A extends LayerAttention> = { teacher: (a: A) => GqaAttention } | { refused: string };

export const SOURCE_KINDS: { [K in AttentionKindName]: SourceKind<AttentionOf<K>> } = {
  gqa: { teacher: (a) => a },
  mla: { refused: 'already MLA' },
  xkv: { refused: 'already MLA (an xKV layer reading a shared latent)' },
};

/** The layer's geometry as a conversion source, or null when its kind cannot be one. */
export function teacherAttention(a: LayerAttention): GqaAttention | null {
  const s = SOURCE_KINDS[a.kind] as SourceKind<LayerAttention>;
  return 'teacher' in s ? s.teacher(a) : null;
}

/** Layer i's geometry as a conversion source, or a UserError naming the layer and why. */
export function teacherLayer(a: LayerAttention, i: number): GqaAttention {
  const s = SOURCE_KINDS[a.kind] as SourceKind<LayerAttention>;
  if ('refused' in s) throw new UserError(`convert: layer ${i} is ${s.refused}; convert a GQA/MHA model`);
  return s.teacher(a);
}

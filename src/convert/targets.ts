// The engines a converted model is served with, and the rules each one's MLA path imposes (the facts behind
// `mla plan`, `mla convert --target` and the export checks). Sources, checked in the engines' code:
//   vLLM   vllm/model_executor/layers/attention/mla_attention.py: MLA head size kv_lora_rank + qk_rope_head_dim must
//          be 576 or 320; models/deepseek_v2.py: every MLA projection built with bias=False, rope is_neox_style=False
//          (interleaved pairs), any rope_scaling other than default becomes deepseek_yarn. FlashMLA: 512+64 bf16, Hopper.
//   SGLang the same DeepSeek-V2 model code and head sizes (FlashMLA / FA3 / FlashInfer MLA kernels at 512+64).
//   llama.cpp src/models/deepseek2.cpp: ggml_rope_ext(..., nullptr /* no rope_freqs */, freq_base, freq_scale, …),
//          kq_scale = mscale²/sqrt(Dn+Dr); no attention biases. ggml-cuda/fattn.cu: MLA flash-attention kernels only
//          for K/V widths 576/512 and 320/256 (the latter with heads % 32 == 0), otherwise no FA kernel (slow path).
//   transformers DeepseekV3: one kv_lora_rank, kv_a_layernorm / q_a_layernorm built with eps 1e-6, rope_scaling any
//          of its rope types (default, linear, llama3, yarn, …), no attention bias unless attention_bias.
// Legend: R kv rank, Dr rope dims, H heads.

import { geometricFit, stockRopeParams } from '../io/deepseek.js';
import type { ModelConfig } from '../model/config.js';

export type Target = 'native' | 'gguf' | 'transformers' | 'vllm' | 'sglang' | 'llamacpp-cuda';
export const TARGETS: readonly Target[] = ['native', 'gguf', 'transformers', 'vllm', 'sglang', 'llamacpp-cuda'];

/**
 * Which rope frequencies a target can express:
 *   free       per-layer, any frequencies (our native format only);
 *   geometric  one set for every layer, f_i = f_0·ρ^i: rope_theta plus a linear scaling factor (transformers, llama.cpp);
 *   unscaled   one geometric set with f_0 = 1: rope_theta alone, rope_scaling null (vLLM and SGLang rewrite any
 *              rope_scaling into DeepSeek's YaRN, so a linear factor would not survive);
 *   hf         what transformers' config can say: geometric, or a Llama-3 teacher's llama3-scaled pairs 0, s, 2s, …
 *              under its own llama3 rope_scaling (io/deepseek.ts stockRopeParams).
 */
export type RopeRule = 'free' | 'geometric' | 'unscaled' | 'hf';

export interface TargetRules {
  target: Target;
  /** Engine names in messages. */
  engine: string;
  rope: RopeRule;
  /** Allowed (kv rank, rope dims) pairs; null: any. */
  shapes: { kvRank: number; ropeDim: number; minHeadsMultiple?: number }[] | null;
  /** One kv rank for all layers. */
  uniformRank: boolean;
  /** Attention biases allowed (q_proj / kv_a_proj_with_mqa). */
  biases: boolean;
  /** kv_a_layernorm required. */
  latentNorm: boolean;
  /** Why the shapes rule exists (printed by plan). */
  shapeWhy: string;
}

const MLA_576 = { kvRank: 512, ropeDim: 64 };
const MLA_320 = { kvRank: 256, ropeDim: 64 };

export const TARGET_RULES: Record<Target, TargetRules> = {
  native: {
    target: 'native', engine: 'mla-upcycle (native format)', rope: 'free', shapes: null, uniformRank: false, biases: true, latentNorm: false,
    shapeWhy: 'any shape: per-layer ranks, biases, per-layer rope frequencies',
  },
  gguf: {
    target: 'gguf', engine: "llama.cpp CPU (deepseek2)", rope: 'geometric', shapes: null, uniformRank: true, biases: false, latentNorm: true,
    shapeWhy: 'any kv rank and rope dims on the CPU path; one kv_lora_rank for all layers',
  },
  'llamacpp-cuda': {
    target: 'llamacpp-cuda', engine: 'llama.cpp CUDA flash attention', rope: 'geometric', shapes: [MLA_576, { ...MLA_320, minHeadsMultiple: 32 }], uniformRank: true,
    biases: false, latentNorm: true, shapeWhy: 'fattn.cu has MLA kernels for K/V 576/512 and 320/256 (heads % 32 == 0) only',
  },
  transformers: {
    target: 'transformers', engine: 'transformers DeepseekV3ForCausalLM', rope: 'hf', shapes: null, uniformRank: true, biases: false, latentNorm: true,
    shapeWhy: 'any shape (eager/SDPA attention); one kv_lora_rank',
  },
  vllm: {
    target: 'vllm', engine: 'vLLM (MLA backends)', rope: 'unscaled', shapes: [MLA_576, MLA_320], uniformRank: true, biases: false, latentNorm: true,
    shapeWhy: 'MLA backends accept head size kv_lora_rank + qk_rope_head_dim ∈ {576, 320}; FlashMLA / FA3-MLA need 512+64 (bf16, Hopper)',
  },
  sglang: {
    target: 'sglang', engine: 'SGLang (MLA backends)', rope: 'unscaled', shapes: [MLA_576, MLA_320], uniformRank: true, biases: false, latentNorm: true,
    shapeWhy: 'FlashMLA / FA3 / FlashInfer MLA kernels are built for 512+64 (FlashInfer also 256+64)',
  },
};

/** Whether a target's rope rule accepts these kept frequencies (one layer's, or the set every layer shares) of a
 *  teacher `cfg` (its rope_theta and rope_scaling matter for 'hf'). */
export function ropeAccepts(rule: RopeRule, invFreq: number[], cfg?: ModelConfig): boolean {
  if (rule === 'free') return true;
  if (rule === 'hf') return cfg ? stockRopeParams(cfg, invFreq) !== null : geometricFit(invFreq) !== null;
  const fit = geometricFit(invFreq);
  if (!fit) return false;
  return rule === 'geometric' || Math.abs(fit.factor - 1) <= 1e-9;
}

// Export an MLA model as a stock DeepSeek-V3 directory (config.json without our extra key + safetensors +
// tokenizer) that transformers loads as DeepseekV3ForCausalLM without custom code, and vLLM/SGLang read with
// their DeepSeek-V3 classes. Rope rows are reordered to adjacent pairs (rope_interleave true) when the model
// uses half-split pairing; ranks are padded with --pad-ranks; everything else stock cannot say is refused.

import type { Tensor } from '../tensor/tensor.js';
import type { MlaAttention, ModelConfig } from '../model/config.js';
import { geometricFit, saveModelDir } from '../io/deepseek.js';
import type { SafetensorsDtype } from '../io/safetensors.js';
import { toStockMla } from './stock.js';

export interface HfExportOptions {
  dtype?: SafetensorsDtype;
  padRanks?: boolean;
  overwrite?: boolean;
  /** Tokenizer files to copy in (see cli/convert.ts tokenizerFiles). */
  copyFiles?: { from: string; name: string }[];
  source?: string;
  /** Largest relative logit error a rope fit may cost (rope-fit.ts). */
  ropeTolerance?: number;
}

export interface HfExportReport {
  config: ModelConfig;
  notes: string[];
}

/** Write `dir` in the stock DeepSeek-V3 layout (atomically), or refuse with every reason at once. */
export function exportHf(dir: string, cfg: ModelConfig, weights: Map<string, Tensor>, opts: HfExportOptions = {}): HfExportReport {
  const source = opts.source ?? 'model';
  const stock = toStockMla(cfg, weights, 'hf', opts.padRanks ?? false, source, opts.ropeTolerance);
  saveModelDir(dir, stock.config, stock.weights, {
    dtype: opts.dtype ?? 'F32',
    overwrite: opts.overwrite ?? false,
    copyFiles: opts.copyFiles ?? [],
    stock: true,
    metadata: { mla_upcycle_source: source },
  });
  const notes = [...stock.notes];
  const fit = geometricFit((stock.config.layers[0] as MlaAttention).ropeInvFreq);
  if (fit && Math.abs(fit.factor - 1) > 1e-9) {
    notes.push(
      `rope: rope_theta ${fit.base.toPrecision(6)} with rope_scaling linear factor ${fit.factor.toPrecision(6)}; transformers applies it ` +
        "as written, but vLLM's and SGLang's DeepSeek classes turn any rope_scaling into deepseek_yarn and will not reproduce this " +
        'model; serve it with transformers, or with llama.cpp ({format} gguf handles the scaling)',
    );
  }
  return { config: stock.config, notes };
}

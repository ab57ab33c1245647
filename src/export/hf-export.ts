// Export an MLA model as a stock DeepSeek-V3 directory (config.json without our extra key + safetensors +
// tokenizer) that transformers loads as DeepseekV3ForCausalLM without custom code, and vLLM/SGLang read with
// their DeepSeek-V3 classes. Rope rows are reordered to adjacent pairs (rope_interleave true) when the model
// uses half-split pairing; ranks are padded with --pad-ranks; everything else stock cannot say is refused.

import { basename } from 'node:path';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from '../model/config.js';
import { attentionKind } from '../model/attention/index.js';
import { geometricFit, saveModelDir } from '../io/deepseek.js';
import type { SafetensorsDtype } from '../io/safetensors.js';
import { servingVerdicts, toStockMla } from './kinds/mla-stock.js';
import { assertStockKinds } from './kinds/index.js';
import { rescaleNormEps, TRANSFORMERS_LATENT_EPS } from './norm-eps.js';

export interface HfExportOptions {
  dtype?: SafetensorsDtype;
  padRanks?: boolean;
  overwrite?: boolean;
  /** Tokenizer files to write (hf-tokenizer.ts hfTokenizerFiles). */
  writeFiles?: { name: string; text: string }[];
  source?: string;
  /** Largest relative logit error a rope fit may cost (kinds/mla-rope-fit.ts). */
  ropeTolerance?: number;
}

export interface HfExportReport {
  config: ModelConfig;
  notes: string[];
}

/** Write `dir` in the stock DeepSeek-V3 layout (atomically), or refuse with every reason at once. */
export function exportHf(dir: string, cfg: ModelConfig, weights: Map<string, Tensor>, opts: HfExportOptions = {}): HfExportReport {
  const source = opts.source ?? 'model';
  assertStockKinds(cfg, 'the stock DeepSeek-V3 layout', source);
  const stock = toStockMla(cfg, weights, 'hf', opts.padRanks ?? false, source, opts.ropeTolerance);
  const eps = rescaleNormEps(stock.config, stock.weights);
  saveModelDir(dir, eps.config, eps.weights, {
    dtype: opts.dtype ?? 'F32',
    overwrite: opts.overwrite ?? false,
    extraFiles: Object.fromEntries((opts.writeFiles ?? []).map((f) => [f.name, f.text])),
    stock: true,
    // The source's base name only: an absolute path would publish the exporting machine's directory layout.
    metadata: { mla_upcycle_source: basename(source) },
  });
  const notes = [...stock.notes];
  if (eps.alpha !== 1) {
    notes.push(
      `rms_norm_eps ${cfg.rmsNormEps} → ${TRANSFORMERS_LATENT_EPS} (transformers' latent norms use 1e-6 whatever the config says): residual stream ` +
        `and latent rows scaled by ${eps.alpha.toPrecision(6)}, exact in every engine${cfg.tieEmbeddings ? '; lm_head untied from the embeddings' : ''}`,
    );
  }
  const first = stock.config.layers[0]!; // every layer MLA with one frequency set (toStockMla checked)
  const fit = geometricFit(attentionKind(first).ropeInvFreq(stock.config, first));
  if (fit && Math.abs(fit.factor - 1) > 1e-9) {
    notes.push(
      `rope: rope_theta ${fit.base.toPrecision(6)} with rope_scaling linear factor ${fit.factor.toPrecision(6)}; transformers applies it ` +
        "as written, but vLLM's and SGLang's DeepSeek classes turn any rope_scaling into deepseek_yarn and will not reproduce this " +
        'model; serve it with transformers, or with llama.cpp ({format} gguf handles the scaling)',
    );
  }
  notes.push(...servingVerdicts(eps.config, 'hf'));
  return { config: eps.config, notes };
}

// The command table: name → one-line summary and a lazy loader of its module (flag spec + run function), so `mla`
// starts without importing every job.

import type { CommandSpec } from './args.js';

export interface LoadedCommand {
  spec: CommandSpec;
  run: (argv: string[]) => Promise<void>;
}

export const commands: Record<string, { summary: string; load: () => Promise<LoadedCommand> }> = {
  demo: {
    summary: 'the whole job on the bundled stories260K: convert, distil, compare, report.md',
    load: async () => { const m = await import('./demo.js'); return { spec: m.demoSpec, run: m.demoCommand }; },
  },
  info: {
    summary: 'architecture, parameters, per-layer attention, KV bytes per token',
    load: async () => { const m = await import('./info.js'); return { spec: m.infoSpec, run: m.infoCommand }; },
  },
  generate: {
    summary: 'generate text (stdout: prompt + continuation)',
    load: async () => { const m = await import('./generate.js'); return { spec: m.generateSpec, run: m.generateCommand }; },
  },
  plan: { summary: "the (kv rank, rope dims) each engine's fast MLA kernels accept, and what each gives this model", load: async () => { const m = await import('./plan.js'); return { spec: m.planSpec, run: m.planCommand }; } },
  convert: {
    summary: 'convert a GQA/MHA model into MLA (SVD/PCA init)',
    load: async () => { const m = await import('./convert.js'); return { spec: m.convertSpec, run: m.convertCommand }; },
  },
  distill: {
    summary: 'distil a converted student from its teacher (forward KL)',
    load: async () => { const m = await import('./distill.js'); return { spec: m.distillSpec, run: m.distillCommand }; },
  },
  export: {
    summary: 'export to GGUF (llama.cpp) or the stock DeepSeek-V3 layout (transformers, vLLM)',
    load: async () => { const m = await import('./export.js'); return { spec: m.exportSpec, run: m.exportCommand }; },
  },
  compare: {
    summary: 'compare a teacher and students (KV, perplexity, KL, tasks) and write a report',
    load: async () => { const m = await import('./compare.js'); return { spec: m.compareSpec, run: m.compareCommand }; },
  },
  ppl: {
    summary: 'perplexity on a text file',
    load: async () => { const m = await import('./ppl.js'); return { spec: m.pplSpec, run: m.pplCommand }; },
  },
  eval: {
    summary: 'zero-shot multiple-choice tasks (acc, acc_norm)',
    load: async () => { const m = await import('./eval.js'); return { spec: m.evalSpec, run: m.evalCommand }; },
  },
};

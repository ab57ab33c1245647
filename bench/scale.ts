// Real-size checkpoints (issue 12, item 5): random-weight HF checkpoints of real model shapes, and one table per shape
// of `mla info` time / peak RSS, weight-basis convert time / peak RSS, default convert time / peak RSS, and prefill
// tokens/s. Every measurement is its own child process, so its peak RSS (VmHWM, polled from /proc every 0.2 s) is its
// own. The checkpoints have no tokenizer, so `mla ppl --text` cannot run on them: prefill tokens/s is measured through
// the library (perplexity() over random token ids, ctx 256) in a child process instead, and the table says so.
// Weights ~N(0, 0.02), norms 1, stored bf16. The generator writes one safetensors shard per layer (the project's
// writer, with an index), so it never holds more than one layer (or the embedding) in f32.
// Not a test; never gates on a time.
// Usage: node dist/bench/scale.js [--shapes smollm2-135m,qwen2.5-0.5b,llama-3.2-1b] [--cache DIR (/tmp/mla-scale)]
//        [--skip-default] [--default-timeout S (480)] [--quick] [--threads N] [--json] [--generate-only]
//        [--decode-only] [--decode-threads 1,2] [--decode-tokens N (32)]
//        (shape mistral-7b is generated and converted with the weight basis only: no default convert, no ppl, no decode)
// Shapes ending in -mla are decode rows only: the base shape converted once (cached next to it) with
// `mla convert --kv-ratio 4 --rope-method ecomla --basis weight --nope-init identity --latent-norm` (the latent norm
// because stock llama.cpp's deepseek2 applies one), decoded by our absorbed latent cache and by llama.cpp on our GGUF
// export of it (arch deepseek2). The final table on a quiet machine:
//   node dist/bench/scale.js --shapes smollm2-135m,smollm2-135m-mla,llama-3.2-1b --decode-only
// Decode tokens/s against llama.cpp on the same weights: our GGUF export at bf16 (`mla export`'s exportGguf), run by
// node-llama-cpp's prebuilt CPU build (no GPU, f16 KV cache: its defaults), greedy from an 8-token prompt, the time
// from the first generated token to the last (decode only); ours: the library's KV-cache decode (forward with a
// KVCache, bf16 weights in memory, argmax), timed the same way. Each engine runs in its own child at each thread count.
// The random checkpoints have no tokenizer, and llama.cpp needs a vocabulary in the GGUF: a synthetic SPM one is
// written (<unk> <s> </s>, the 256 byte pieces, then "▁w<i>" up to the vocab size); ids are fed directly, no text.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mulberry32, gaussian, type Rng } from '../src/tensor/rng.js';
import { getBackend } from '../src/backends/index.js';
import { Model } from '../src/model/model.js';
import { defaultInvFreq, llama3InvFreq, type ModelConfig } from '../src/model/config.js';
import { modelTensors, parameterCount, type TensorSpec } from '../src/model/weights.js';
import { loadHfModel } from '../src/io/hf.js';
import { loadModel } from '../src/io/load.js';
import { hfConfigJson } from '../src/io/hfconfig.js';
import { writeSafetensors, type SafetensorsWriteEntry } from '../src/io/safetensors.js';
import { perplexity } from '../src/eval/perplexity.js';
import { table } from '../src/report/table.js';
import type { CpuBackend } from '../src/backends/cpu/index.js';
import { noGrad } from '../src/autograd/var.js';
import { forward } from '../src/model/forward.js';
import { KVCache } from '../src/model/cache.js';
import { tidy } from '../src/tensor/storage.js';
import { exportGguf } from '../src/export/gguf-export.js';
import { TOKEN_TYPE, type GgufVocab } from '../src/export/gguf-vocab.js';

const { values } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'smollm2-135m,qwen2.5-0.5b,llama-3.2-1b' },
    cache: { type: 'string', default: '/tmp/mla-scale' },
    'skip-default': { type: 'boolean', default: false },
    'default-timeout': { type: 'string', default: '480' },
    quick: { type: 'boolean', default: false },
    threads: { type: 'string' },
    json: { type: 'boolean', default: false },
    'child-ppl': { type: 'string' },
    windows: { type: 'string', default: '2' },
    'generate-only': { type: 'boolean', default: false },
    'decode-only': { type: 'boolean', default: false },
    'decode-threads': { type: 'string', default: '1,2' },
    'decode-tokens': { type: 'string', default: '32' },
    'child-decode': { type: 'string' },
    engine: { type: 'string' },
  },
});

interface Shape {
  name: string;
  config: ModelConfig;
  /** Weight-basis convert only (too large for a forward pass on this box: no default convert, no ppl). */
  convertOnly: boolean;
}

function gqa(arch: ModelConfig['arch'], o: {
  V: number; C: number; I: number; L: number; H: number; Hkv: number; D: number; bias: boolean; theta: number;
  eps: number; maxPos: number; tied: boolean; scaling?: Record<string, unknown>;
}): ModelConfig {
  const base = defaultInvFreq(o.theta, o.D);
  return {
    arch, vocabSize: o.V, hiddenSize: o.C, intermediateSize: o.I, numLayers: o.L, numHeads: o.H, rmsNormEps: o.eps,
    ropePairing: 'half', ropeInvFreq: o.scaling ? llama3InvFreq(base, o.scaling) : base, ropeTheta: o.theta,
    ropeScaling: o.scaling ?? null, maxPositions: o.maxPos, tieEmbeddings: o.tied, bosTokenId: 1, eosTokenId: 2,
    layers: Array.from({ length: o.L }, () => ({ kind: 'gqa' as const, numKvHeads: o.Hkv, headDim: o.D, qkvBias: o.bias })),
  };
}

/** The published configs (config.json of each model on the Hub), weights random. */
const SHAPES: Record<string, Shape> = {
  'smollm2-135m': {
    name: 'smollm2-135m', convertOnly: false,
    config: gqa('llama', { V: 49152, C: 576, I: 1536, L: 30, H: 9, Hkv: 3, D: 64, bias: false, theta: 100000, eps: 1e-5, maxPos: 8192, tied: true }),
  },
  'qwen2.5-0.5b': {
    name: 'qwen2.5-0.5b', convertOnly: false,
    config: gqa('qwen2', { V: 151936, C: 896, I: 4864, L: 24, H: 14, Hkv: 2, D: 64, bias: true, theta: 1000000, eps: 1e-6, maxPos: 32768, tied: true }),
  },
  'llama-3.2-1b': {
    name: 'llama-3.2-1b', convertOnly: false,
    config: gqa('llama', {
      V: 128256, C: 2048, I: 8192, L: 16, H: 32, Hkv: 8, D: 64, bias: false, theta: 500000, eps: 1e-5, maxPos: 131072, tied: true,
      scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    }),
  },
  // Mistral-7B-v0.1.
  'mistral-7b': {
    name: 'mistral-7b', convertOnly: true,
    config: gqa('mistral', { V: 32000, C: 4096, I: 14336, L: 32, H: 32, Hkv: 8, D: 128, bias: false, theta: 10000, eps: 1e-5, maxPos: 32768, tied: false }),
  },
};

/** Decode-only rows for an MLA conversion of a shape (see the header): the base shape and the convert flags. */
const MLA_ROWS: Record<string, { base: string; args: string[] }> = {
  'smollm2-135m-mla': {
    base: 'smollm2-135m',
    args: ['--kv-ratio', '4', '--rope-method', 'ecomla', '--basis', 'weight', '--nope-init', 'identity', '--latent-norm'],
  },
};

/** Random values for one tensor: norms 1, everything else (weights and biases) ~N(0, 0.02). */
function randomTensor(spec: TensorSpec, rng: Rng): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  if (spec.name.endsWith('layernorm.weight') || spec.name.endsWith('norm.weight')) {
    d.fill(1);
  } else {
    for (let i = 0; i < n; i++) d[i] = 0.02 * gaussian(rng);
  }
  return d;
}

/** The shard a tensor goes to: 0 the embedding, 1 + i layer i, L + 1 the final norm and lm_head. */
function shardOf(name: string, L: number): number {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  if (m) return 1 + Number(m[1]);
  return name === 'model.embed_tokens.weight' ? 0 : L + 1;
}

/**
 * Write a random bf16 checkpoint of `shape` to `dir` (config.json, one shard per layer, index), under a temporary
 * name renamed into place. Peak memory: the largest shard in f32 (the embedding) plus its bf16 encoding.
 */
function generate(shape: Shape, dir: string): void {
  const cfg = shape.config;
  const L = cfg.numLayers;
  const specs = modelTensors(cfg);
  const groups: TensorSpec[][] = Array.from({ length: L + 2 }, () => []);
  for (const s of specs) groups[shardOf(s.name, L)]!.push(s);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const rng = mulberry32(12);
  const pad = (k: number): string => String(k).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let total = 0;
  groups.forEach((g, k) => {
    const file = `model-${pad(k + 1)}-of-${pad(groups.length)}.safetensors`;
    const entries: SafetensorsWriteEntry[] = g.map((s) => ({ name: s.name, shape: s.shape, data: randomTensor(s, rng), dtype: 'BF16' }));
    writeSafetensors(join(tmp, file), entries, { format: 'pt' });
    for (const e of entries) {
      weightMap[e.name] = file;
      total += e.data.length * 2;
    }
    process.stderr.write(`\r${shape.name}: shard ${k + 1}/${groups.length}`);
  });
  process.stderr.write('\n');
  writeFileSync(join(tmp, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(hfConfigJson(cfg, 'bfloat16'), null, 2) + '\n');
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
}

interface Measured {
  seconds: number;
  peak_rss_mb: number;
  ok: boolean;
  /** Timed out (killed) or failed: the last progress line on stderr. */
  note: string;
  stdout: string;
}

function vmHwmKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Run `node args` as a child; wall time and the child's own peak RSS (VmHWM polled every 0.2 s). */
function measure(args: string[], timeoutS: number): Promise<Measured> {
  return new Promise((done) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0;
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000); });
    const poll = setInterval(() => { peak = Math.max(peak, vmHwmKb(child.pid!)); }, 200);
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, timeoutS * 1000);
    child.on('close', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      const seconds = (performance.now() - t0) / 1000;
      const lines = err.split(/[\r\n]+/).map((s) => s.trim()).filter((s) => s !== '');
      const last = lines[lines.length - 1] ?? '';
      const note = killed ? `killed after ${Math.round(timeoutS)} s; last progress: ${last}` : code === 0 ? '' : `exit ${code}: ${last}`;
      done({ seconds, peak_rss_mb: Math.round(peak / 1024), ok: code === 0 && !killed, note, stdout: out });
    });
  });
}

interface PplResult { tokens_per_s: number; tokens: number; peak_rss_mb: number; load_s: number }

/** Child: load the checkpoint through the library and time perplexity() over random ids (ctx 256). */
function childPpl(dir: string): PplResult {
  const be = getBackend('cpu');
  if (values.threads !== undefined) (be as CpuBackend).setThreads(Number(values.threads));
  const t0 = performance.now();
  const loaded = loadHfModel(dir);
  const model = Model.fromWeights(loaded.config, loaded.weights, be, dir);
  const loadS = (performance.now() - t0) / 1000;
  const ctx = 256;
  const windows = Number(values.windows);
  const rng = mulberry32(7);
  const V = loaded.config.vocabSize;
  const ids = Array.from({ length: windows * ctx + 1 }, () => 3 + Math.floor(rng() * (V - 3)));
  perplexity(model, ids.slice(0, 65), 64, 1); // warm-up
  const t1 = performance.now();
  const r = perplexity(model, ids, ctx, 1);
  const secs = (performance.now() - t1) / 1000;
  return { tokens_per_s: r.tokens / secs, tokens: r.tokens, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), load_s: loadS };
}

interface DecodeResult { tokens_per_s: number; tokens: number; peak_rss_mb: number }

/** A vocabulary llama.cpp's SPM tokenizer accepts (the checkpoints have none): control tokens, byte pieces, words. */
function syntheticVocab(V: number): GgufVocab {
  const hex = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');
  const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${hex(b)}>`), ...Array.from({ length: V - 259 }, (_, i) => `\u2581w${i}`)];
  const types = tokens.map((_, i) => (i === 0 ? TOKEN_TYPE.unknown : i < 3 ? TOKEN_TYPE.control : i < 259 ? TOKEN_TYPE.byte : TOKEN_TYPE.normal));
  return { model: 'llama', tokens, scores: tokens.map(() => 0), types, bos: 1, eos: 2, unk: 0, addBos: true, notes: [] };
}

const PROMPT = [1, 300, 301, 302, 303, 304, 305, 306];

/** Child: our KV-cache decode (greedy) at `threads`; tokens/s over the decode steps after the prompt. */
function childDecodeOurs(dir: string, threads: number, n: number): DecodeResult {
  const be = getBackend('cpu');
  (be as CpuBackend).setThreads(threads);
  const loaded = loadModel(dir);
  const model = Model.fromWeights(loaded.config, loaded.weights, be, dir);
  const V = loaded.config.vocabSize;
  const argmax = (d: ArrayLike<number>, off: number): number => {
    let best = 0;
    for (let i = 1; i < V; i++) if (d[off + i]! > d[off + best]!) best = i;
    return best;
  };
  let t0 = 0;
  noGrad(() => {
    const cache = new KVCache(model, 1, PROMPT.length + n + 1);
    let next = tidy(() => {
      const l = forward(model, Int32Array.from(PROMPT), 1, PROMPT.length, { cache }).value;
      return argmax(l.data, (PROMPT.length - 1) * V);
    });
    t0 = performance.now();
    for (let i = 0; i < n; i++) next = tidy(() => argmax(forward(model, Int32Array.of(next), 1, 1, { cache }).value.data, 0));
  });
  const secs = (performance.now() - t0) / 1000;
  return { tokens_per_s: n / secs, tokens: n, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

/** Child: llama.cpp (node-llama-cpp, CPU) on the bf16 GGUF at `threads`; tokens/s from the first generated token to
 *  the (n+1)-th, so the prompt is not counted. */
async function childDecodeLlama(gguf: string, threads: number, n: number): Promise<DecodeResult> {
  const nl = await import('node-llama-cpp');
  const llama = await nl.getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: nl.LlamaLogLevel.error });
  const m = await llama.loadModel({ modelPath: gguf });
  const ctx = await m.createContext({ contextSize: 256, threads });
  let t0 = 0;
  let got = 0;
  for await (const _t of ctx.getSequence().evaluate(PROMPT as never[], { temperature: 0, yieldEogToken: true })) {
    if (got === 0) t0 = performance.now();
    if (got++ >= n) break;
  }
  const secs = (performance.now() - t0) / 1000;
  await ctx.dispose();
  await m.dispose();
  await llama.dispose();
  return { tokens_per_s: n / secs, tokens: n, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

/** Our bf16 GGUF of the checkpoint with the synthetic vocabulary, written once next to it. */
function ggufOf(dir: string): string {
  const file = `${dir}.bf16.gguf`;
  if (!existsSync(file)) {
    const loaded = loadModel(dir);
    exportGguf(file, loaded.config, loaded.weights, { dtype: 'bf16', vocab: syntheticVocab(loaded.config.vocabSize), source: dir });
  }
  return file;
}

interface DecodeRow { threads: number; ours: DecodeResult | null; llamacpp: DecodeResult | null; note: string }

async function decodeRows(dir: string): Promise<DecodeRow[]> {
  const self = fileURLToPath(import.meta.url);
  const gguf = ggufOf(dir);
  const rows: DecodeRow[] = [];
  for (const th of values['decode-threads'].split(',').map(Number)) {
    const run = async (engine: string): Promise<[DecodeResult | null, string]> => {
      const m = await measure([self, '--child-decode', engine === 'ours' ? dir : gguf, '--engine', engine, '--threads', String(th), '--decode-tokens', values['decode-tokens']], 1800);
      return m.ok ? [JSON.parse(m.stdout.trim()) as DecodeResult, ''] : [null, `${engine}: ${m.note}`];
    };
    const [ours, n1] = await run('ours');
    const [lc, n2] = await run('llamacpp');
    rows.push({ threads: th, ours, llamacpp: lc, note: [n1, n2].filter((x) => x).join('; ') });
  }
  return rows;
}

interface Row {
  shape: string;
  parameters: number;
  info: Measured;
  convert_weight: Measured;
  convert_default: Measured | null;
  ppl: (PplResult & { note: string }) | null;
  decode: DecodeRow[] | null;
}

async function main(): Promise<void> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const cli = resolve(here, '../src/cli/main.js');
  const self = fileURLToPath(import.meta.url);
  const names = values.shapes.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) {
    if (!SHAPES[n] && !MLA_ROWS[n]) throw new Error(`--shapes: unknown shape "${n}" (expected some of ${[...Object.keys(SHAPES), ...Object.keys(MLA_ROWS)].join(', ')})`);
  }
  const rows: Row[] = [];
  const decodeTable: (DecodeRow & { shape: string })[] = [];
  for (const n of names) {
    const mla = MLA_ROWS[n];
    if (mla) {
      // Decode rows only, on the base shape's conversion (made once, kept in the cache directory).
      const baseDir = join(values.cache, mla.base);
      if (!existsSync(join(baseDir, 'config.json'))) {
        process.stderr.write(`writing a random bf16 ${mla.base} checkpoint to ${baseDir}\n`);
        generate(SHAPES[mla.base]!, baseDir);
      }
      const dir = join(values.cache, n);
      if (!existsSync(join(dir, 'config.json'))) {
        process.stderr.write(`${n}: mla convert ${mla.base} ${mla.args.join(' ')}\n`);
        const m = await measure([cli, 'convert', baseDir, '--out', dir, '--overwrite', ...mla.args], 3600);
        if (!m.ok) throw new Error(`${n}: mla convert failed: ${m.note}`);
      }
      if (values['generate-only']) continue;
      const decode = await decodeRows(dir);
      decodeTable.push(...decode.map((d) => ({ shape: n, ...d })));
      if (values.json) process.stdout.write(JSON.stringify({ shape: n, decode }) + '\n');
      continue;
    }
    const shape = SHAPES[n]!;
    const dir = join(values.cache, n);
    if (!existsSync(join(dir, 'config.json'))) {
      process.stderr.write(`writing a random bf16 ${n} checkpoint to ${dir}\n`);
      generate(shape, dir);
    }
    if (values['generate-only']) continue;
    if (values['decode-only']) {
      if (shape.convertOnly) continue;
      const decode = await decodeRows(dir);
      decodeTable.push(...decode.map((d) => ({ shape: n, ...d })));
      if (values.json) process.stdout.write(JSON.stringify({ shape: n, decode }) + '\n');
      continue;
    }
    const outW = `${dir}-mla-weight`;
    const outD = `${dir}-mla-default`;
    process.stderr.write(`${n}: mla info\n`);
    const info = await measure([cli, 'info', dir], 600);
    process.stderr.write(`${n}: mla convert (weight basis) ${info.note}\n`);
    const weightArgs = ['--kv-ratio', '4', '--rope-method', 'ecomla', '--basis', 'weight', '--nope-init', 'identity'];
    const convertWeight = await measure([cli, 'convert', dir, '--out', outW, '--overwrite', ...weightArgs], 3600);
    rmSync(outW, { recursive: true, force: true });
    let convertDefault: Measured | null = null;
    // A convert-only shape gets the weight-basis conversion alone: calibration would hold the whole teacher.
    if (!values['skip-default'] && !shape.convertOnly) {
      process.stderr.write(`${n}: mla convert (defaults) ${convertWeight.note}\n`);
      const extra = values.quick ? ['--calib-samples', '4', '--calib-len', '64'] : [];
      convertDefault = await measure([cli, 'convert', dir, '--out', outD, '--overwrite', '--kv-ratio', '4', ...extra], Number(values['default-timeout']));
      rmSync(outD, { recursive: true, force: true });
    }
    let ppl: Row['ppl'] = null;
    if (!shape.convertOnly) {
      process.stderr.write(`${n}: prefill through the library\n`);
      const childArgs = [self, '--child-ppl', dir, '--windows', values.quick ? '1' : values.windows];
      if (values.threads !== undefined) childArgs.push('--threads', values.threads);
      const m = await measure(childArgs, 3600);
      ppl = m.ok ? { ...(JSON.parse(m.stdout.trim()) as PplResult), note: '' } : { tokens_per_s: NaN, tokens: 0, peak_rss_mb: m.peak_rss_mb, load_s: NaN, note: m.note };
    }
    const decode = shape.convertOnly ? null : await decodeRows(dir);
    if (decode) decodeTable.push(...decode.map((d) => ({ shape: n, ...d })));
    const row: Row = { shape: n, parameters: parameterCount(shape.config), info, convert_weight: convertWeight, convert_default: convertDefault, ppl, decode };
    rows.push(row);
    if (values.json) {
      const strip = (m: Measured | null): Omit<Measured, 'stdout'> | null => m && { seconds: m.seconds, peak_rss_mb: m.peak_rss_mb, ok: m.ok, note: m.note };
      process.stdout.write(JSON.stringify({ ...row, info: strip(info), convert_weight: strip(convertWeight), convert_default: strip(convertDefault) }) + '\n');
    }
  }
  if (values.json || values['generate-only']) return;
  const tps = (d: DecodeResult | null): string => (d ? d.tokens_per_s.toFixed(1) : 'failed');
  const decodeText = decodeTable.length === 0 ? '' : table(
    ['shape', 'threads', 'ours tokens/s (bf16 weights)', 'llama.cpp tokens/s (bf16 GGUF)', 'ours / llama.cpp', 'note'],
    decodeTable.map((d) => [d.shape, String(d.threads), tps(d.ours), tps(d.llamacpp), d.ours && d.llamacpp ? (d.ours.tokens_per_s / d.llamacpp.tokens_per_s).toFixed(2) : '—', d.note]),
  ) + '\n';
  if (values['decode-only']) {
    process.stdout.write(decodeText);
    return;
  }
  const cell = (m: Measured | null): string => !m ? 'skipped' : m.ok ? `${m.seconds.toFixed(1)} s / ${m.peak_rss_mb} MB` : `${m.seconds.toFixed(0)} s / ${m.peak_rss_mb} MB (${m.note})`;
  process.stdout.write(table(
    ['shape', 'params', 'mla info (time / peak RSS)', 'convert, weight basis', 'convert, defaults', 'prefill tokens/s (library, random ids, ctx 256)'],
    rows.map((r) => [
      r.shape, `${(r.parameters / 1e6).toFixed(0)}M`, cell(r.info), cell(r.convert_weight), cell(r.convert_default),
      !r.ppl ? 'n/a (convert only)' : r.ppl.note !== '' ? r.ppl.note : `${r.ppl.tokens_per_s.toFixed(1)} (${r.ppl.tokens} tokens; peak ${r.ppl.peak_rss_mb} MB)`,
    ]),
  ) + '\n');
  process.stdout.write('random bf16 weights, no tokenizer: `mla ppl --text` cannot run, so prefill is perplexity() over random ids through the library.\n');
  process.stdout.write(decodeText);
}

if (values['child-ppl']) {
  process.stdout.write(JSON.stringify(childPpl(values['child-ppl'])) + '\n');
} else if (values['child-decode']) {
  const th = Number(values.threads ?? '1');
  const n = Number(values['decode-tokens']);
  const r = values.engine === 'llamacpp' ? await childDecodeLlama(values['child-decode'], th, n) : childDecodeOurs(values['child-decode'], th, n);
  process.stdout.write(JSON.stringify(r) + '\n');
} else {
  await main();
}

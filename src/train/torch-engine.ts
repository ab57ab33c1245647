// The PyTorch engine of `mla distill --engine torch`: the same job as train/distill.ts, run by python/mla_torch in a
// child process (or N data-parallel ones). This side resolves every model format into a ModelConfig from its headers
// only (the weights are read by Python, never by Node: a 1B/8B teacher is not loaded twice), writes the token shards
// and a run spec (JSON) under DIR/torch/, starts Python, and reads its JSON lines on stdout (log lines → progress bar
// and curve.svg; a note → onNote; one error line → a one-line UserError whose {field} references the CLI shows as
// flags). Python writes log.jsonl, the checkpoints and the final model directory with the same names and dtypes as
// the cpu engine.

import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createServer, type AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../model/config.js';
import { modelTensors, type TensorSpec } from '../model/weights.js';
import { deepseekConfigJson } from '../io/deepseek.js';
import { UserError } from '../errors.js';
import { assertTorchKinds } from './torch-kinds.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { OptionError } from '../errors.js';
import { writeChart, type DistillSettings, type EvalResult, type LogLine } from './distill.js';
import { prepareDistill, type DistillJob } from './run.js';
import { readLog, readRunRecord } from '../io/run-files.js';

/** python/ of this checkout (dist/src/train/ → repository root). */
export const PYTHON_PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'python');

export interface TorchPython {
  python: string;
  torch: string;
  cuda: boolean;
  devices: number;
  /** Whether torch has torch.compile (≥ 2.0); without it --compile runs eager, with a note. */
  compile: boolean;
}

/** Environment for a child that imports mla_torch from this checkout. */
export function torchEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const pp = process.env.PYTHONPATH;
  return { ...process.env, PYTHONPATH: pp ? `${PYTHON_PACKAGE_ROOT}:${pp}` : PYTHON_PACKAGE_ROOT, PYTHONUNBUFFERED: '1', ...extra };
}

const probed = new Map<string, TorchPython | null>();

/** Ask one interpreter what it offers (once per process); null when it cannot run or has no torch. */
function probe(python: string): TorchPython | null {
  if (!probed.has(python)) probed.set(python, probeOnce(python));
  return probed.get(python)!;
}

function probeOnce(python: string): TorchPython | null {
  const r = spawnSync(python, ['-m', 'mla_torch', 'probe'], { encoding: 'utf8', env: torchEnv(), timeout: 120_000 });
  if (r.status !== 0 || !r.stdout) return null;
  try {
    const o = JSON.parse(r.stdout.trim().split('\n').pop()!) as { torch: string; cuda: boolean; devices: number; compile: boolean };
    return { python, ...o };
  } catch {
    return null;
  }
}

/**
 * The Python to run: `explicit` (--python), else $MLA_PYTHON, else the first of python3 and /usr/bin/python3 that
 * imports torch (a pyenv/venv python3 first on PATH often lacks it while the system one has it).
 */
export function findTorchPython(explicit?: string): TorchPython {
  const given = explicit ?? process.env.MLA_PYTHON;
  const candidates = given ? [given] : ['python3', '/usr/bin/python3'];
  for (const c of candidates) {
    const p = probe(c);
    if (p) return p;
  }
  const tried = candidates.join(', ');
  throw new UserError(
    `--engine torch: no Python with torch found (tried ${tried}${given ? '' : '; set --python PATH or MLA_PYTHON'}). ` +
      'Install PyTorch (Debian: apt-get install python3-torch; elsewhere: pip install torch).',
  );
}

/** The error for --device cuda where torch sees no GPU. */
export function cudaMissing(py: TorchPython): UserError {
  return new UserError(`--device cuda: ${py.python} has torch ${py.torch} but torch.cuda.is_available() is false (use --device cpu, or a CUDA build of torch on a GPU machine)`);
}

export interface TorchModelSpec {
  config: ModelConfig;
  tensors: TensorSpec[];
  /** safetensors: the files of a model directory, read by tensor name; llama2c: the one .bin checkpoint. */
  format: 'safetensors' | 'llama2c';
  files: string[];
}

/**
 * Where Python reads a model's weights: the safetensors files of a model directory (single file or the shards of its
 * index), read by our tensor names, or a llama2.c checkpoint (python/mla_torch/llama2c.py reads it as
 * src/io/llama2c.ts does). `config` is the one the TS reader resolved from the headers (rope frequencies, pairing,
 * biases, layers); no weight is read here.
 */
export function torchModelSpec(path: string, config: ModelConfig): TorchModelSpec {
  const tensors = modelTensors(config);
  const isDir = existsSync(path) && statSync(path).isDirectory();
  if (isDir && existsSync(join(path, 'model.safetensors'))) {
    return { config, tensors, format: 'safetensors', files: [resolve(path, 'model.safetensors')] };
  }
  if (isDir && existsSync(join(path, 'model.safetensors.index.json'))) {
    const idx = JSON.parse(readFileSync(join(path, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    return { config, tensors, format: 'safetensors', files: [...new Set(Object.values(idx.weight_map))].sort().map((f) => resolve(path, f)) };
  }
  if (isDir) throw new UserError(`${path}: no model.safetensors or model.safetensors.index.json`);
  return { config, tensors, format: 'llama2c', files: [resolve(path)] };
}

/** Token sequences as PREFIX.tokens (int32 LE) and PREFIX.offsets (int64 LE, n+1 entries). */
export function writeTokenShard(prefix: string, seqs: number[][]): void {
  const total = seqs.reduce((a, s) => a + s.length, 0);
  const tokens = new Int32Array(total);
  const offsets = new BigInt64Array(seqs.length + 1);
  let o = 0;
  seqs.forEach((s, i) => {
    tokens.set(s, o);
    o += s.length;
    offsets[i + 1] = BigInt(o);
  });
  writeFileSync(`${prefix}.tokens`, new Uint8Array(tokens.buffer));
  writeFileSync(`${prefix}.offsets`, new Uint8Array(offsets.buffer));
}

export type TorchDevice = 'cpu' | 'cuda';

/** Where each process keeps its teacher: on its student's device (same), on the CPU, or on a GPU of its own (own-gpu:
 *  process r drives cuda:2r for the student and cuda:2r+1 for the teacher). Apart from the student, the teacher's
 *  final hidden states (N, C) cross to the student's device and the loss uses a frozen copy of its head there, so the
 *  (N, V) logits never cross devices. */
export type TeacherDevice = 'same' | 'cpu' | 'own-gpu';
export const TEACHER_DEVICES: readonly TeacherDevice[] = ['same', 'cpu', 'own-gpu'];

export interface TorchOptions {
  device: TorchDevice;
  dtype: 'f32' | 'bf16';
  nproc: number;
  teacherDevice: TeacherDevice;
  python?: string;
  gradCheckpoint: boolean;
  compile: boolean;
  /** Rows per loss chunk (logits of at most this many rows exist at once). */
  klChunk: number;
  /** Threads per process (torch.set_num_threads); 0 leaves torch's default. */
  threads?: number;
}

export interface TorchRun {
  teacher: { path: string; config: ModelConfig };
  /** On resume: the checkpoint directory the run continues from (its config and weights). */
  student: { path: string; config: ModelConfig };
  trainSeqs: number[][];
  evalSeqs: number[][];
  settings: DistillSettings;
  outDir: string;
  copyFiles: { from: string; name: string }[];
  resume: boolean;
  torch: TorchOptions;
  progress?: ProgressSink;
  onLog?: (l: LogLine) => void;
  /** A note from the engine (e.g. --compile on a torch without torch.compile), with {field} references. */
  onNote?: (text: string) => void;
}

/** Write DIR/torch/ (token shards, spec.json); returns the spec path. */
export function prepareTorchRun(run: TorchRun): string {
  const work = resolve(run.outDir, 'torch');
  mkdirSync(work, { recursive: true });
  writeTokenShard(join(work, 'train'), run.trainSeqs);
  writeTokenShard(join(work, 'eval'), run.evalSeqs);
  const spec = {
    version: 1,
    out: resolve(run.outDir),
    resume: run.resume,
    resume_checkpoint: run.resume ? resolve(run.student.path) : null,
    teacher: torchModelSpec(run.teacher.path, run.teacher.config),
    student: torchModelSpec(run.student.path, run.student.config),
    student_config_json: JSON.stringify(deepseekConfigJson(run.student.config, 'float32', true), null, 2) + '\n',
    copy_files: run.copyFiles.map((c) => ({ from: resolve(c.from), name: c.name })),
    train: join(work, 'train'),
    eval: join(work, 'eval'),
    settings: run.settings,
    device: run.torch.device,
    teacher_device: run.torch.teacherDevice,
    dtype: run.torch.dtype,
    grad_checkpoint: run.torch.gradCheckpoint,
    compile: run.torch.compile,
    kl_chunk: run.torch.klChunk,
    threads: run.torch.threads ?? 0,
  };
  const file = join(work, 'spec.json');
  writeFileSync(file, JSON.stringify(spec) + '\n');
  return file;
}

/** Run the distillation job on torch; resolves with the final evaluation (as distill()). */
export async function distillTorch(run: TorchRun): Promise<EvalResult> {
  assertTorchKinds(run.student.config, 'student'); // kinds the Python model lacks (torch-kinds.ts)
  assertTorchKinds(run.teacher.config, 'teacher');
  const py = findTorchPython(run.torch.python);
  if (run.torch.device === 'cuda' && !py.cuda) throw cudaMissing(py);
  const perProcess = run.torch.teacherDevice === 'own-gpu' ? 2 : 1;
  if (run.torch.device === 'cuda' && run.torch.nproc * perProcess > py.devices) {
    throw new OptionError('nproc', run.torch.nproc, `needs ${run.torch.nproc * perProcess} GPUs${perProcess === 2 ? ' with {teacherDevice} own-gpu (2 per process)' : ''}, ${py.devices} visible`);
  }
  if (run.settings.batch % run.torch.nproc !== 0) {
    throw new OptionError('batch', run.settings.batch, `must be divisible by {nproc} ${run.torch.nproc} (each process takes batch/nproc rows)`);
  }
  const specFile = prepareTorchRun(run);
  const progress = run.progress ?? silentProgress;
  let error: string | null = null;
  let done: { eval_ppl: number; eval_kl: number; tokens: number } | null = null;
  let lastTokens: number | null = null;
  const onLine = (text: string, main: boolean) => {
    let m: { type?: string; line?: LogLine; message?: string; step?: number; tokens?: number; eval_ppl?: number; eval_kl?: number };
    try {
      m = JSON.parse(text);
    } catch {
      return; // a stray print from a library; stdout is ours otherwise
    }
    if (m.type === 'error' && error === null) error = m.message ?? 'unknown error';
    if (!main) return;
    if (m.type === 'start') {
      lastTokens = m.tokens ?? 0;
      progress.tick(m.step! * run.settings.batch * run.settings.accum * run.settings.seq);
    } else if (m.type === 'log' && m.line) {
      const l = m.line;
      if (l.loss !== undefined) {
        progress.tick(l.tokens - (lastTokens ?? 0));
        lastTokens = l.tokens;
      }
      if (l.eval_ppl !== undefined) writeChart(run.outDir, readLog(run.outDir) ?? []);
      run.onLog?.(l);
    } else if (m.type === 'note' && m.message) {
      run.onNote?.(m.message);
    } else if (m.type === 'done') {
      done = { eval_ppl: m.eval_ppl!, eval_kl: m.eval_kl!, tokens: m.tokens! };
    }
  };
  // N processes are started here as torchrun would (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT): one launcher for
  // every torch version, and a dead rank takes the others down at once instead of leaving them in a collective.
  const N = run.torch.nproc;
  const port = N > 1 ? await freePort() : 0;
  const threads = run.torch.threads || (run.torch.device === 'cpu' && N > 1 ? Math.max(1, Math.floor(cpus().length / N)) : 0);
  const stderrFile = (r: number) => join(run.outDir, 'torch', r === 0 ? 'stderr.log' : `stderr-${r}.log`);
  const children = Array.from({ length: N }, (_, r) => {
    const errFd = openSync(stderrFile(r), 'w');
    const env = N > 1
      ? torchEnv({ RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(N), LOCAL_WORLD_SIZE: String(N), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) })
      : torchEnv();
    if (threads) env.OMP_NUM_THREADS = String(threads);
    const child = spawn(py.python, ['-m', 'mla_torch', 'distill', specFile, '--watch-stdin'], { env, stdio: ['pipe', 'pipe', errFd] });
    closeSync(errFd);
    createInterface({ input: child.stdout! }).on('line', (text) => onLine(text, r === 0));
    return child;
  });
  const codes = await Promise.all(children.map((child) => new Promise<number>((res) => {
    child.on('close', (c, sig) => {
      const code = c ?? (sig ? 128 : 1);
      if (code !== 0) for (const o of children) if (o !== child && o.exitCode === null) o.kill('SIGKILL');
      res(code);
    });
  })));
  for (const c of children) c.stdin?.end();
  progress.end();
  const bad = codes.findIndex((c) => c !== 0);
  if (bad >= 0 || !done) {
    const r = Math.max(bad, 0);
    const tail = existsSync(stderrFile(r)) ? readFileSync(stderrFile(r), 'utf8').trim().split('\n').filter(Boolean).pop() : undefined;
    // Exit 2 is a failure the user can act on (python/mla_torch/__main__.py): its one line says it all; anything else
    // is an engine bug or a killed worker, whose traceback stays in the stderr file.
    const details = codes[r] === 2 && error !== null ? '' : ` [details: ${stderrFile(r)}]`;
    throw new UserError(`--engine torch: ${error ?? `python exited with code ${codes[r]}${tail ? ` (${tail})` : ''}`}${details}`);
  }
  writeChart(run.outDir, readLog(run.outDir) ?? []);
  const d = done as { eval_ppl: number; eval_kl: number; tokens: number };
  return { ppl: d.eval_ppl, kl: d.eval_kl, tokens: d.tokens };
}

/** A TCP port free on 127.0.0.1 right now (the rendezvous of the ranks). */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => res(port));
    });
  });
}

/** Torch options as a caller gives them: anything left out takes the run's saved value on resume, else its default. */
export type TorchOverrides = Partial<Omit<TorchOptions, 'device'>> & { device?: TorchDevice | 'auto' };

/** Full torch options; probes Python, torch and the GPU first, so a missing piece fails before any data work. */
export function resolveTorchOptions(o: TorchOverrides, saved: Partial<TorchOptions> = {}): TorchOptions {
  let device = o.device ?? saved.device ?? 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new OptionError('device', device, 'expected auto, cpu or cuda');
  const py = findTorchPython(o.python ?? saved.python);
  if (device === 'auto') device = py.cuda ? 'cuda' : 'cpu';
  if (device === 'cuda' && !py.cuda) throw cudaMissing(py);
  const dtype = o.dtype ?? saved.dtype ?? (device === 'cuda' ? 'bf16' : 'f32');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new OptionError('dtype', dtype, 'expected f32 or bf16');
  const int = (field: string, v: number, min: number): number => {
    if (!Number.isInteger(v) || v < min) throw new OptionError(field, v, `expected an integer ≥ ${min}`);
    return v;
  };
  const teacherDevice = o.teacherDevice ?? saved.teacherDevice ?? 'same';
  if (!TEACHER_DEVICES.includes(teacherDevice)) throw new OptionError('teacherDevice', teacherDevice, `expected ${TEACHER_DEVICES.join(', ')}`);
  if (teacherDevice === 'own-gpu' && device !== 'cuda') throw new OptionError('teacherDevice', teacherDevice, 'needs {device} cuda (two GPUs per process)');
  return {
    device, dtype, teacherDevice,
    nproc: int('nproc', o.nproc ?? saved.nproc ?? 1, 1),
    python: py.python,
    gradCheckpoint: o.gradCheckpoint ?? saved.gradCheckpoint ?? false,
    compile: o.compile ?? saved.compile ?? false,
    klChunk: int('klChunk', o.klChunk ?? saved.klChunk ?? 1024, 1),
    threads: int('threads', o.threads ?? saved.threads ?? 0, 0),
  };
}

/** Whether the run in `dir` was started on the torch engine (its run.json records the options). */
export function runUsesTorch(dir: string): boolean {
  // A missing or broken run.json is runDistill's to report (with its own checks and messages).
  if (!existsSync(join(dir, 'run.json'))) return false;
  try {
    return readRunRecord(dir).torch !== undefined;
  } catch {
    return false;
  }
}

/** `mla distill --engine torch` as a library call: runDistill's job (same checks, data, settings, run.json, resume) on
 *  torch. A failure before the first checkpoint of a new run removes what the run made, as runDistill does. */
export async function runDistillTorch(job: DistillJob, given: TorchOverrides = {}): Promise<{ out: string; ppl: number; kl: number; tokens: number }> {
  const saved = job.resume ? (readRunRecord(job.out).torch as Partial<TorchOptions> | undefined) : undefined;
  const torch = resolveTorchOptions(given, saved);
  const existed = existsSync(job.out);
  // Headers only: Node validates configs, vocabularies, --seq and the checkpoint's state, and never reads a weight.
  const pending = prepareDistill(job, { headersOnly: true, chunkedLoss: true, record: { torch: { ...torch } } }, async (p) => {
    const s = p.settings;
    const r = await distillTorch({
      teacher: { path: p.teacherPath, config: p.teacherConfig },
      student: { path: p.resumeCheckpoint ?? p.studentPath, config: p.studentConfig },
      trainSeqs: p.trainSeqs, evalSeqs: p.evalSeqs, settings: s, outDir: p.outDir, copyFiles: p.copyFiles, resume: !!job.resume, torch,
      progress: p.progress('distill', s.steps * s.batch * s.accum * s.seq), onLog: job.onLog, onNote: job.onNote,
    });
    return { out: p.outDir, ...r };
  });
  try {
    return await pending;
  } catch (e) {
    if (!job.resume && !existsSync(join(job.out, 'checkpoint'))) {
      if (!existed) rmSync(job.out, { recursive: true, force: true });
      else for (const n of readdirSync(job.out)) rmSync(join(job.out, n), { recursive: true, force: true });
    }
    throw e;
  }
}

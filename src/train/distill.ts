// Knowledge distillation of a converted student from its teacher (X-EcoMLA's recipe, methods.md §1.3):
// loss = klWeight · KL(p_teacher ‖ p_student) + ceWeight · CE, mean over tokens, temperature τ (KL scaled by τ²).
// AdamW, linear warmup + cosine decay, global-norm clipping, gradient accumulation, held-out evaluation,
// atomic checkpoints with exact resume (batches are seeded by step), a JSONL log and an SVG curve.

import { existsSync, rmSync, renameSync } from 'node:fs';
import { appendLog, readLog, writeLog, writeTextAtomic, type DistillSettings, type LogLine, type TrainScope } from '../io/run-files.js';
import { join } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { isHalf, tidy } from '../tensor/storage.js';
import { Var, backward, noGrad } from '../autograd/var.js';
import { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { FORWARD_HINT, NonFiniteError, assertFiniteRows, assertFiniteValue } from '../model/finite.js';
import { firstNonFinite, nonFiniteName } from '../tensor/finite.js';
import { windowBatches } from '../eval/perplexity.js';
import { layerPrefix } from '../model/weights.js';
import type { AttentionKindName } from '../model/attention/index.js';
import { OptionError, UserError } from '../errors.js';
import { AdamW, defaultAdamW, learningRate } from './optimizer.js';
import { Batcher } from './data.js';
import { saveCheckpoint, type TrainState } from './checkpoint.js';
import { saveModelDir } from '../io/deepseek.js';
import { lineChart } from '../report/svg.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';

export type { DistillSettings, LogLine, TrainScope } from '../io/run-files.js';

/** Said when the teacher's own forward pass went non-finite (its weights were finite at load). */
const TEACHER_HINT = "the teacher's forward pass overflowed float32 or met a non-finite weight (rerun with {backend} ref to compare)";

/** What distill returns: the final held-out evaluation and the trained student (a new Model; the input is unchanged). */
export interface DistillResult extends EvalResult {
  student: Model;
}

export interface EvalResult {
  ppl: number;
  kl: number;
  tokens: number;
}

export interface DistillRun {
  teacher: Model;
  student: Model;
  train: Batcher;
  /** Held-out sequences (never trained on). */
  evalSeqs: number[][];
  settings: DistillSettings;
  outDir: string;
  copyFiles: { from: string; name: string }[];
  /** Resume from this state (weights already loaded into the student). */
  resume?: { state: TrainState; moments: Map<string, Tensor>; adamStep: number };
  progress?: ProgressSink;
  /** Called after every logged line (CLI progress extras). */
  onLog?: (l: LogLine) => void;
}

/** Whether `--train attention` trains a layer of each kind: the attention a conversion produced (MLA) trains; the
 *  teacher's own attention (GQA/MHA, a hybrid's kept layers) stays as it was. A new kind must say which it is. */
const TRAINS_ATTENTION: Record<AttentionKindName, boolean> = { gqa: false, mla: true, xkv: true };

/** Names of the parameters that train: the attention of converted layers (TRAINS_ATTENTION), or everything. */
export function trainableNames(student: Model, scope: TrainScope): Set<string> {
  const names = new Set<string>();
  const converted = student.config.layers.flatMap((a, i) => (TRAINS_ATTENTION[a.kind] ? [layerPrefix(i) + '.self_attn.'] : []));
  for (const name of student.params.keys()) {
    if (scope === 'all' || converted.some((p) => name.startsWith(p))) names.add(name);
  }
  return names;
}

/** Mean held-out perplexity of the student and mean KL(teacher ‖ student) per token. */
export function evaluate(teacher: Model, student: Model, seqs: number[][], batch = 8): EvalResult {
  let nll = 0;
  let kl = 0;
  let n = 0;
  noGrad(() => {
    for (const { input: ids, targets, B, T } of windowBatches(seqs.filter((q) => q.length >= 2), batch)) tidy(() => {
      const sl = forward(student, ids, B, T);
      const tl = forward(teacher, ids, B, T).value;
      const V = student.config.vocabSize;
      assertFiniteRows('distill eval', 'logits from the teacher', tl.data, T, V, TEACHER_HINT);
      assertFiniteRows('distill eval', 'logits from the student', sl.value.data, T, V);
      const ce = student.F.crossEntropy(sl, targets).value;
      const k = student.F.klDiv(sl, tl, 1).value;
      for (let r = 0; r < B * T; r++) {
        if (targets[r]! < 0) continue;
        nll += ce.data[r]!;
        kl += k.data[r]!;
        n++;
      }
    });
  });
  const ppl = Math.exp(nll / n);
  assertFiniteValue('distill eval', "the student's perplexity", ppl, `mean NLL ${(nll / n).toPrecision(6)} nats per token`);
  assertFiniteValue('distill eval', 'the mean KL(teacher ‖ student)', kl / n, `over ${n} tokens`);
  return { ppl, kl: kl / n, tokens: n };
}

/** Run (or continue) distillation; returns the final evaluation. */
export function distill(run: DistillRun): DistillResult {
  const { teacher, settings: s, outDir } = run;
  const progress = run.progress ?? silentProgress;
  if (teacher.config.vocabSize !== run.student.config.vocabSize) {
    throw new UserError(`distill: teacher vocabulary ${teacher.config.vocabSize} ≠ student vocabulary ${run.student.config.vocabSize} (they must share a tokenizer)`);
  }
  const trainable = trainableNames(run.student, s.train);
  // The student that trains is a new Model (the caller's is left as it was): frozen parameters become constants so no
  // gradient is computed for them; trained ones get their own buffers, since AdamW updates in place and the caller's
  // student may share tensors with the teacher it was converted from. Trained weights are f32 masters even when the
  // student was read in bf16/f16 (frozen ones stay as read).
  const own = (w: Tensor): Tensor => (isHalf(w.dtype) ? w.to('f32') : w.clone());
  const student = new Model(
    run.student.config,
    new Map([...run.student.params].map(([name, v]) => [name, trainable.has(name) ? Var.param(own(v.value)) : Var.const(v.value)])),
    run.student.be,
  );
  const params = new Map([...student.params].filter(([n]) => trainable.has(n)));
  const opt = new AdamW(student.be, params, { ...defaultAdamW, weightDecay: s.weightDecay });
  let step = 0;
  let tokens = 0;
  let log: LogLine[] = [];
  if (run.resume) {
    step = run.resume.state.step;
    tokens = run.resume.state.tokens;
    opt.step = run.resume.adamStep;
    for (const [name] of params) {
      const m = run.resume.moments.get(`m.${name}`);
      const v = run.resume.moments.get(`v.${name}`);
      if (!m || !v) throw new OptionError('resume', undefined, `optimizer state for ${name} missing`);
      opt.m.get(name)!.data.set(m.data);
      opt.v.get(name)!.data.set(v.data);
    }
    // Keep the log up to the checkpoint so the resumed curve continues it exactly.
    log = (readLog(outDir) ?? []).filter((l) => l.step <= step);
    writeLog(outDir, log);
  } else {
    writeLog(outDir, []);
  }
  const emit = (l: LogLine) => {
    log.push(l);
    appendLog(outDir, l);
    run.onLog?.(l);
  };
  const drawChart = () => writeChart(outDir, log);
  const state = (): TrainState => ({ version: 1, step, tokens, settings: { ...s } });
  // A resumed run starts from a checkpoint; a fresh one has none until its first save.
  let checkpointed = run.resume !== undefined;
  const stopped = () =>
    checkpointed ? `stopped; the last good checkpoint stays in ${join(outDir, 'checkpoint')}` : 'stopped before the first checkpoint was written';
  // Finite teacher and student at step 0 (both evaluated), so later non-finite student logits mean divergence.
  const studentHint = () => (step === 0 ? FORWARD_HINT : `the student diverged at step ${step} (lower {lr} or raise {warmup})`);
  const checkpoint = () => {
    saveCheckpoint(outDir, student.config, student.weights(), opt, state(), run.copyFiles);
    checkpointed = true;
  };

  if (step === 0) {
    const e = evaluate(teacher, student, run.evalSeqs);
    emit({ step: 0, tokens: 0, eval_ppl: e.ppl, eval_kl: e.kl });
    drawChart();
  }
  progress.tick(step * s.batch * s.accum * s.seq);
  const t0 = Date.now();
  const tokens0 = tokens;
  while (step < s.steps) tidy(() => {
    // Everything one step makes (activations, gradients, the teacher's logits) is freed when it ends (tidy).
    let lossSum = 0;
    let klSum = 0;
    let ceSum = 0;
    let stepTokens = 0;
    for (let micro = 0; micro < s.accum; micro++) {
      const b = run.train.get(step, micro);
      const n = b.B * b.T;
      const tl = noGrad(() => forward(teacher, b.ids, b.B, b.T).value);
      // A NaN teacher would otherwise train the student towards NaN (or, through a swallowed NaN, towards garbage).
      const at = (bb: number, t: number) => `step ${step + 1}, micro-batch ${micro + 1}, row ${bb}, position ${t}`;
      assertFiniteRows('distill', 'logits from the teacher', tl.data, b.T, tl.dim(-1), `${TEACHER_HINT}; ${stopped()}`, at);
      const sl = forward(student, b.ids, b.B, b.T);
      assertFiniteRows('distill', 'logits from the student', sl.value.data, b.T, tl.dim(-1), `${studentHint()}; ${stopped()}`, at);
      const F = student.F;
      const tau = s.temperature;
      const scale = 1 / (n * s.accum);
      let loss: Var | null = null;
      if (s.klWeight > 0) {
        const kl = F.sum(F.klDiv(sl, tl, tau));
        assertFiniteValue('distill', 'the KL loss', kl.value.data[0]!, `step ${step + 1}; ${stopped()}`);
        klSum += kl.value.data[0]! / n;
        loss = F.affine(kl, s.klWeight * tau * tau * scale);
      }
      if (s.ceWeight > 0) {
        const ce = F.sum(F.crossEntropy(sl, b.targets));
        assertFiniteValue('distill', 'the cross-entropy loss', ce.value.data[0]!, `step ${step + 1}; ${stopped()}`);
        ceSum += ce.value.data[0]! / n;
        const term = F.affine(ce, s.ceWeight * scale);
        loss = loss ? F.add(loss, term) : term;
      }
      if (!loss) throw new UserError('distill: {klWeight} and {ceWeight} are both 0: no loss to train on');
      lossSum += loss.value.data[0]! * s.accum;
      backward(student.be, loss);
      stepTokens += n;
    }
    const gn = opt.gradNorm();
    if (!Number.isFinite(lossSum) || !Number.isFinite(gn)) {
      throw new UserError(
        `distill: non-finite ${Number.isFinite(lossSum) ? 'gradient norm' : 'loss'} at step ${step + 1} (lower {lr} or raise {warmup}); ${stopped()}`,
      );
    }
    if (s.clip > 0 && gn > s.clip) opt.scaleGrads(s.clip / gn);
    const lr = learningRate(step, s.steps, s.lr, s.warmup, s.minLrRatio);
    opt.update(lr);
    // The gradients die with this step's tidy scope: drop the references, so the next step starts from none.
    student.zeroGrad();
    step++;
    tokens += stepTokens;
    const secs = (Date.now() - t0) / 1000;
    emit({
      step, tokens, lr, loss: lossSum / s.accum, kl: klSum / s.accum, ce: ceSum / s.accum || undefined, grad_norm: gn,
      tokens_per_s: Math.round((tokens - tokens0) / Math.max(secs, 1e-9)),
    });
    progress.tick(stepTokens);
    if (step % s.evalEvery === 0 || step === s.steps) {
      const e = evaluateDuringTraining(() => evaluate(teacher, student, run.evalSeqs), step, stopped());
      emit({ step, tokens, eval_ppl: e.ppl, eval_kl: e.kl });
      drawChart();
    }
    if (step % s.checkpointEvery === 0 || step === s.steps) {
      // A checkpoint is only ever a good one: an update that made a weight non-finite stops the run before it is saved.
      assertFiniteParams(params, step, stopped());
      checkpoint();
    }
  });
  opt.dispose();
  progress.end();
  // DIR itself becomes a normal model directory (the final student).
  const tmp = join(outDir, '.final.tmp');
  saveModelDir(tmp, student.config, student.weights(), { copyFiles: run.copyFiles, overwrite: true });
  for (const f of ['config.json', 'model.safetensors', ...run.copyFiles.map((c) => c.name)]) {
    if (existsSync(join(tmp, f))) renameSync(join(tmp, f), join(outDir, f));
  }
  rmSync(tmp, { recursive: true, force: true });
  const last = [...log].reverse().find((l) => l.eval_ppl !== undefined)!;
  return { ppl: last.eval_ppl!, kl: last.eval_kl!, tokens, student };
}

/** Held-out evaluation inside the training loop: a non-finite result names the step and where the last checkpoint is. */
function evaluateDuringTraining(run: () => EvalResult, step: number, stopped: string): EvalResult {
  try {
    return run();
  } catch (e) {
    if (e instanceof NonFiniteError) throw new NonFiniteError(`${e.message}; at step ${step} (lower {lr} or raise {warmup}); ${stopped}`);
    throw e;
  }
}

/** Every trained parameter finite after the update of `step`, else a NonFiniteError naming the first bad tensor. */
function assertFiniteParams(params: Map<string, Var>, step: number, stopped: string): void {
  for (const [name, v] of params) {
    const i = firstNonFinite(v.value.data);
    if (i >= 0) {
      throw new NonFiniteError(
        `distill: non-finite weight after the update at step ${step} (${nonFiniteName(v.value.data[i]!)} in ${name}); ` +
          `not saved (lower {lr} or raise {warmup}); ${stopped}`,
      );
    }
  }
}

/** The training curve: held-out perplexity and training loss against tokens seen. */
export function writeChart(outDir: string, log: LogLine[], extra: { name: string; points: [number, number][] }[] = []): void {
  const evals = log.filter((l) => l.eval_ppl !== undefined);
  const train = log.filter((l) => l.loss !== undefined);
  const svg = lineChart(
    [
      { name: 'held-out ppl', points: evals.map((l) => [l.tokens, l.eval_ppl!]) },
      { name: 'train loss (KD)', points: train.map((l) => [l.tokens, Math.max(l.loss!, 1e-6)]), dashed: true },
      ...extra.map((e) => ({ ...e, markersOnly: true })),
    ],
    { title: 'Distillation', xLabel: 'training tokens', yLabel: 'held-out perplexity / loss', logY: true },
  );
  writeTextAtomic(join(outDir, 'curve.svg'), svg);
}

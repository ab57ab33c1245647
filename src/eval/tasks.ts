// Zero-shot multiple choice as lm-evaluation-harness scores it. For an item (context c, choices x_1..x_k, label y):
//   ll_i   = Σ_{t ∈ cont(i)} log p(tok_t | tok_<t)          summed log-likelihood of choice i's continuation tokens
//   acc      = [argmax_i ll_i = y]
//   acc_norm = [argmax_i ll_i / len(x_i) = y]               len = characters (Unicode code points) of the choice as
//                                                           written, without the delimiter: lm-eval's
//                                                           `completion_len = len(choice)`, which its docs call the
//                                                           byte length (the same number for ASCII text)
// Ties go to the first choice (numpy argmax). Reported: the means, their standard errors sqrt(p(1−p)/(n−1)) (lm-eval's
// mean_stderr: sample standard deviation / √n), and n.
//
// Tokens follow lm-eval's _encode_pair: the continuation is delimiter + choice (delimiter " " by default); trailing
// whitespace of the context moves to the front of the continuation; context+continuation is encoded as one text (with
// BOS) and the continuation tokens are those past the context's own token count, so merges at the boundary go to the
// continuation. The model reads (context tokens + continuation tokens) minus the last token, cut from the left to the
// model's context. Sequences run in batches sorted by length, right-padded (causal attention never lets a real
// position see the padding, and padded positions are not scored).
// Legend: B batch rows, T padded length, V vocab.

import { noGrad } from '../autograd/var.js';
import type { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { FORWARD_HINT, assertFiniteRows } from '../model/finite.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { UserError } from '../errors.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import type { TaskItem } from './task-file.js';
import { tidy } from '../tensor/storage.js';

export interface TaskOptions {
  /** Sequences per forward (default 8). */
  batch?: number;
  /** Score only the first `limit` items (lm-eval's --limit). */
  limit?: number;
  /** Longest input the model reads (default the model's maxPositions); longer inputs lose tokens on the left. */
  maxLength?: number;
  /** Ticks once per scored sequence (item × choice). */
  progress?: ProgressSink;
}

export interface ItemResult {
  label: number;
  /** argmax of the summed log-likelihoods. */
  pred: number;
  /** argmax of the log-likelihoods over the choices' lengths. */
  predNorm: number;
  /** Summed log-likelihood (nats) of each choice. */
  logliks: number[];
  /** Continuation tokens scored for each choice. */
  tokens: number[];
}

export interface TaskResult {
  acc: number;
  acc_stderr: number;
  acc_norm: number;
  acc_norm_stderr: number;
  n: number;
  items: ItemResult[];
}

/** The text put between the context and a choice: the item's own, else " " unless either side already has space. */
export function continuationText(item: Pick<TaskItem, 'context' | 'delimiter'>, choice: string): string {
  if (item.delimiter !== null) return item.delimiter + choice;
  return /\s$/.test(item.context) || /^\s/.test(choice) ? choice : ' ' + choice;
}

/**
 * lm-eval's _encode_pair: context tokens (with BOS) and continuation tokens, where the continuation tokens are those
 * of encode(context + continuation) past the context's token count. An empty context becomes the BOS token (EOS when
 * the tokenizer has no BOS), as lm-eval's prefix token.
 */
export function encodePair(tok: Tokenizer, context: string, continuation: string): { context: number[]; continuation: number[] } {
  const trimmed = context.replace(/\s+$/, '');
  const cont = context.slice(trimmed.length) + continuation;
  if (trimmed === '') {
    const prefix = tok.bosId ?? tok.eosId;
    if (prefix === null) throw new UserError('empty context: the tokenizer has neither BOS nor EOS to condition on');
    return { context: [prefix], continuation: tok.encode(cont, false) };
  }
  const whole = tok.encode(trimmed + cont, true);
  const ctx = tok.encode(trimmed, true);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/** Standard error of a mean of 0/1 outcomes: sqrt(p(1−p)/(n−1)); NaN below 2 items. */
export function binaryStderr(p: number, n: number): number {
  return n < 2 ? NaN : Math.sqrt((p * (1 - p)) / (n - 1));
}

/** Index of the largest value; the first on ties. */
function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

interface Request {
  item: number;
  choice: number;
  /** Model input (≤ maxLength ids). */
  input: number[];
  /** Continuation tokens: the last `scored` positions of `input` predict them. */
  targets: number[];
}

/** Score multiple-choice items with `model`; see the file header for the definitions. */
export function evaluateTasks(model: Model, tokenizer: Tokenizer, items: readonly TaskItem[], opts: TaskOptions = {}): TaskResult {
  const batch = opts.batch ?? 8;
  const maxLength = opts.maxLength ?? model.config.maxPositions;
  const progress = opts.progress ?? silentProgress;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`evaluateTasks: batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`evaluateTasks: maxLength must be a positive integer, got ${maxLength}`);
  const chosen = items.slice(0, opts.limit ?? items.length);
  if (chosen.length === 0) throw new UserError('no items to evaluate');

  const requests: Request[] = [];
  chosen.forEach((item, i) => {
    item.choices.forEach((choice, c) => {
      const what = `${item.where ?? `item ${i + 1}`}: choice ${c}`;
      let pair: ReturnType<typeof encodePair>;
      try {
        pair = encodePair(tokenizer, item.context, continuationText(item, choice));
      } catch (e) {
        throw e instanceof UserError ? new UserError(`${what}: ${e.message}`) : e;
      }
      const n = pair.continuation.length;
      if (n === 0) throw new UserError(`${what}: the choice adds no tokens after the context`);
      if (n > maxLength) throw new UserError(`${what}: ${n} continuation tokens exceed the model's context of ${maxLength}`);
      const seq = pair.context.concat(pair.continuation).slice(-(maxLength + 1));
      requests.push({ item: i, choice: c, input: seq.slice(0, -1), targets: pair.continuation });
    });
  });

  // Longest first, so each batch pads to its first sequence and little padding is wasted.
  const order = requests.map((_, i) => i).sort((a, b) => requests[b]!.input.length - requests[a]!.input.length || a - b);
  const logliks = chosen.map((it) => new Array<number>(it.choices.length).fill(0));
  const tokens = chosen.map((it) => new Array<number>(it.choices.length).fill(0));
  for (const r of requests) tokens[r.item]![r.choice] = r.targets.length;
  noGrad(() => {
    for (let s = 0; s < order.length; s += batch) {
      const group = order.slice(s, s + batch).map((r) => requests[r]!);
      const B = group.length;
      const T = group[0]!.input.length;
      const ids = new Int32Array(B * T); // right padding with id 0: never attended to by real positions, never scored
      const targets = new Int32Array(B * T).fill(-1);
      group.forEach((r, b) => {
        const L = r.input.length;
        ids.set(r.input, b * T);
        const first = L - r.targets.length; // row predicting the first continuation token
        r.targets.forEach((t, j) => (targets[b * T + first + j] = t));
      });
      tidy(() => {
        const logits = forward(model, ids, B, T);
        assertFiniteRows('eval', 'logits', logits.value.data, T, model.config.vocabSize, FORWARD_HINT,
          (b, t) => `item ${group[b]!.item + 1}, choice ${group[b]!.choice}, position ${t}`);
        const nll = model.F.crossEntropy(logits, targets).value.data; // (B·T)
        group.forEach((r, b) => {
          let ll = 0;
          for (let t = 0; t < T; t++) ll -= nll[b * T + t]!;
          logliks[r.item]![r.choice] = ll;
        });
      });
      progress.tick(B);
    }
  });
  progress.end();

  const results: ItemResult[] = chosen.map((item, i) => {
    const ll = logliks[i]!;
    const norm = ll.map((v, c) => v / [...item.choices[c]!].length);
    return { label: item.label, pred: argmax(ll), predNorm: argmax(norm), logliks: ll, tokens: tokens[i]! };
  });
  const n = results.length;
  const acc = results.filter((r) => r.pred === r.label).length / n;
  const accNorm = results.filter((r) => r.predNorm === r.label).length / n;
  return { acc, acc_stderr: binaryStderr(acc, n), acc_norm: accNorm, acc_norm_stderr: binaryStderr(accNorm, n), n, items: results };
}

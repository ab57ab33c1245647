// Side-by-side measurement of a teacher and its students on the same held-out text: KV bytes per token, compression,
// parameters, perplexity, mean KL(teacher ‖ student) per token, and task accuracy.

import { noGrad } from '../autograd/var.js';
import type { Model } from '../model/model.js';
import { forward } from '../model/forward.js';
import { FORWARD_HINT, assertFiniteRows, assertFiniteValue } from '../model/finite.js';
import { kvBytesPerToken } from '../model/config.js';
import { parameterCount } from '../model/weights.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { windowBatches, windows } from './perplexity.js';
import { evaluateTasks } from './tasks.js';
import type { TaskItem } from './task-file.js';
import type { ProgressSink } from '../progress.js';
import { silentProgress } from '../progress.js';
import { tidy } from '../tensor/storage.js';
import type { CompareRow } from '../report/report.js';

export type { CompareRow };

/** Perplexity of every model and KL to the teacher, over the same windows of `ctx` tokens (batched). */
export function compareModels(
  teacher: { name: string; model: Model },
  students: { name: string; model: Model }[],
  ids: number[],
  ctx: number,
  opts: { tokenizer?: Tokenizer; tasks?: TaskItem[]; batch?: number; progress?: ProgressSink } = {},
): CompareRow[] {
  const all = [teacher, ...students];
  const ws = windows(ids, ctx);
  const nll = all.map(() => 0);
  const kl = all.map(() => 0);
  let count = 0;
  const batch = opts.batch ?? 8;
  const progress = opts.progress ?? silentProgress;
  let w0 = 0; // index of the batch's first window
  noGrad(() => {
    for (const { input, targets, B, T } of windowBatches(ws, batch)) tidy(() => {
      const where = (b: number, t: number) => `window ${w0 + b + 1} of ${ws.length}, position ${t}`;
      const V = teacher.model.config.vocabSize;
      const tLogits = forward(teacher.model, input, B, T).value;
      assertFiniteRows('compare', `logits from ${teacher.name} (the teacher)`, tLogits.data, T, V, FORWARD_HINT, where);
      all.forEach((m, k) => {
        const logits = k === 0 ? tLogits : forward(m.model, input, B, T).value;
        if (k > 0) assertFiniteRows('compare', `logits from ${m.name}`, logits.data, T, V, FORWARD_HINT, where);
        const ce = m.model.be.run('crossEntropy', [logits], { targets })[0];
        const kd = m.model.be.run('klDiv', [logits, tLogits], { temperature: 1 })[0];
        for (let r = 0; r < B * T; r++) {
          if (targets[r]! < 0) continue;
          nll[k]! += ce.data[r]!;
          kl[k]! += kd.data[r]!;
        }
      });
      count += B * (T - 1);
      w0 += B;
      progress.tick(B * T);
    });
  });
  progress.end();
  const teacherKv = kvBytesPerToken(teacher.model.config, 4);
  return all.map((m, k) => {
    const task = opts.tasks && opts.tokenizer ? evaluateTasks(m.model, opts.tokenizer, opts.tasks) : null;
    const kv = kvBytesPerToken(m.model.config, 4);
    const ppl = Math.exp(nll[k]! / count);
    assertFiniteValue('compare', `the perplexity of ${m.name}`, ppl, `mean NLL ${(nll[k]! / count).toPrecision(6)} nats per token`);
    assertFiniteValue('compare', `the mean KL of ${m.name} to the teacher`, kl[k]! / count, `over ${count} tokens`);
    return {
      name: m.name,
      kvBytesPerToken: kv,
      compression: teacherKv / kv,
      parameters: parameterCount(m.model.config),
      perplexity: ppl,
      kl: k === 0 ? 0 : kl[k]! / count,
      acc: task ? task.acc : null,
      accNorm: task ? task.acc_norm : null,
    };
  });
}

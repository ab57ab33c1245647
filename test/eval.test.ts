// Zero-shot multiple choice: task-file parsing (ours and lm-evaluation-harness fields, malformed lines), scoring checked
// against log-softmax sums computed here from the model's logits, batching, left truncation, acc_norm, and the CLI on
// the stories260K fixture model with the bundled task files.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, STORIES_BIN, STORIES_TOK, mla, tempDir } from './helpers.js';
import { parseTaskJsonl, readTaskFile, type TaskItem } from '../src/eval/task-file.js';
import { binaryStderr, continuationText, encodePair, evaluateTasks } from '../src/eval/tasks.js';
import { openModel } from '../src/infer/open.js';
import { refBackend } from '../src/backends/ref/index.js';
import { forward } from '../src/model/forward.js';
import { noGrad } from '../src/autograd/var.js';
import { UserError } from '../src/errors.js';
import type { Model } from '../src/model/model.js';
import type { Tokenizer } from '../src/io/tokenizer.js';
import { belowTeacherNotes } from '../src/report/report.js';

const CLOZE = join(FIXTURES, 'tasks', 'story-cloze.jsonl');
const NEXT_WORD = join(FIXTURES, 'tasks', 'next-word.jsonl');

const jsonl = (...rows: unknown[]): string => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n');

/** Parsing `text` throws a UserError whose message contains every one of `parts`. */
function rejects(text: string, ...parts: string[]): void {
  assert.throws(
    () => parseTaskJsonl(text, 'bad.jsonl'),
    (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
      for (const p of parts) assert.ok(e.message.includes(p), `message "${e.message}" lacks "${p}"`);
      return true;
    },
  );
}

test('task file: our fields, blank lines, BOM, CRLF', () => {
  const text = '\uFEFF' + jsonl({ context: 'A', choices: ['x', 'y'], label: 1 }, '', { context: '', choices: ['p', 'q', 'r'], label: 0, extra: 5 }) + '\r\n\r\n';
  const items = parseTaskJsonl(text, 't.jsonl');
  assert.deepEqual(items, [
    { context: 'A', choices: ['x', 'y'], label: 1, delimiter: null, where: 't.jsonl:1' },
    { context: '', choices: ['p', 'q', 'r'], label: 0, delimiter: null, where: 't.jsonl:3' },
  ]);
});

test('task file: lm-evaluation-harness export fields', () => {
  const items = parseTaskJsonl(
    jsonl(
      { query: 'Q1', choices: ['a', 'b', 'c', 'd'], gold: 2 }, // HellaSwag processed docs
      { ctx: 'Q2', endings: ['a', 'b', 'c', 'd'], label: '3' }, // HellaSwag raw rows
      { question: 'Q3', options: ['a', 'b', 'c', 'd'], answer: 'C' }, // letter answers
      { question: 'Q4', choices: { text: ['a', 'b', 'c'], label: ['1', '2', '3'] }, answerKey: '2' }, // ARC
      { question: 'Q5', choices: { text: ['a', 'b'], label: ['A', 'B'] }, answerKey: 'B', target_delimiter: '' },
    ),
    'lm.jsonl',
  );
  assert.deepEqual(
    items.map((i) => [i.context, i.choices.length, i.label, i.delimiter]),
    [['Q1', 4, 2, null], ['Q2', 4, 3, null], ['Q3', 4, 2, null], ['Q4', 3, 1, null], ['Q5', 2, 1, '']],
  );
});

test('task file: malformed lines name the file, the line and the field', () => {
  const ok = { context: 'c', choices: ['a', 'b'], label: 0 };
  rejects(jsonl(ok, ok, '{"context": "c", "choices": [', ok), 'bad.jsonl:3', 'not valid JSON');
  rejects(jsonl(ok, [1, 2]), 'bad.jsonl:2', 'JSON object');
  rejects(jsonl({ choices: ['a', 'b'], label: 0 }), 'bad.jsonl:1', 'context', '"query"');
  rejects(jsonl({ context: 3, choices: ['a', 'b'], label: 0 }), 'bad.jsonl:1: context', 'string');
  rejects(jsonl(ok, { query: 'c', label: 0 }), 'bad.jsonl:2: choices', 'missing');
  rejects(jsonl({ context: 'c', endings: 'a b', label: 0 }), 'bad.jsonl:1: endings', 'array');
  rejects(jsonl({ context: 'c', choices: ['a'], label: 0 }), 'choices', 'at least 2');
  rejects(jsonl({ context: 'c', choices: ['a', 7], label: 0 }), 'bad.jsonl:1: choices[1]', 'string');
  rejects(jsonl({ context: 'c', choices: ['a', ''], label: 0 }), 'choices[1]', 'non-empty');
  rejects(jsonl({ context: 'c', choices: ['a', 'b'] }), 'bad.jsonl:1: label', 'missing');
  rejects(jsonl({ context: 'c', choices: ['a', 'b'], label: 2 }), 'bad.jsonl:1: label', '0..1');
  rejects(jsonl({ context: 'c', choices: ['a', 'b'], gold: 0.5 }), 'bad.jsonl:1: gold');
  rejects(jsonl({ context: 'c', choices: ['a', 'b'], answer: 'C' }), 'bad.jsonl:1: answer', 'A–B');
  rejects(jsonl({ context: 'c', choices: ['a', 'b'], answer: 'yes' }), 'answer');
  rejects(jsonl({ question: 'c', choices: { text: ['a', 'b'], label: ['A'] }, answerKey: 'A' }), 'choices.label');
  rejects(jsonl({ question: 'c', choices: { text: ['a', 'b'], label: ['A', 'B'] }, answerKey: 'C' }), 'answerKey', '["A","B"]');
  rejects(jsonl({ ...ok, target_delimiter: 1 }), 'target_delimiter');
  rejects('\n\n', 'bad.jsonl', 'no items');
  assert.throws(() => readTaskFile('/nonexistent/tasks.jsonl'), /'tasks' \/nonexistent\/tasks.jsonl: file not found/);
});

test('bundled task files: 60 items of 4 choices, answers spread over the positions', () => {
  for (const file of [CLOZE, NEXT_WORD]) {
    const items = readTaskFile(file);
    assert.equal(items.length, 60, file);
    const positions = new Set<number>();
    for (const it of items) {
      assert.equal(it.choices.length, 4);
      assert.equal(new Set(it.choices).size, 4, `${file}: duplicate choices`);
      positions.add(it.label);
    }
    assert.equal(positions.size, 4, `${file}: the true choice should appear at every position`);
  }
});

let opened: { model: Model; tokenizer: Tokenizer } | null = null;
/** stories260K on the ref backend (float64 accumulation), loaded once. */
function stories(): { model: Model; tokenizer: Tokenizer } {
  if (!opened) {
    const o = openModel(STORIES_BIN, { tokenizer: STORIES_TOK }, refBackend);
    opened = { model: o.model, tokenizer: o.tokenizer! };
  }
  return opened;
}

/**
 * Σ log p(continuation | context) computed directly: tokens of context+continuation and of the context alone, one
 * forward over the (left-truncated) sequence, log-softmax by hand in float64 on each scored row.
 */
function handLoglik(model: Model, tok: Tokenizer, context: string, continuation: string, maxLength: number): number {
  const all = tok.encode(context + continuation, true);
  const nCtx = tok.encode(context, true).length;
  const start = Math.max(0, all.length - (maxLength + 1));
  const seq = all.slice(start);
  const L = seq.length - 1;
  const V = model.config.vocabSize;
  const logits = noGrad(() => forward(model, Int32Array.from(seq.slice(0, L)), 1, L)).value.data;
  let ll = 0;
  for (let pos = nCtx; pos < all.length; pos++) {
    const row = pos - 1 - start; // the row that predicts all[pos]
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[row * V + v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[row * V + v]! - max);
    ll += logits[row * V + all[pos]!]! - max - Math.log(sum);
  }
  return ll;
}

const close = (a: number, b: number, tol: number, what: string): void =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

/** Short hand-made items with odd spacing and delimiters. */
function shortItems(): TaskItem[] {
  return [
    { context: 'Lily had a red ball. She loved her ', choices: ['ball', 'ballet shoes very much', 'sky.'], label: 0, delimiter: null },
    { context: 'One day, Tom went to the', choices: [' park.', ' moon.'], label: 0, delimiter: null },
    { context: 'Tom saw a big ', choices: ['dog', 'cat'], label: 1, delimiter: '' },
  ];
}

/** Two items from the bundled next-word file (long contexts), then the short ones. */
const someItems = (): TaskItem[] => [...readTaskFile(NEXT_WORD).slice(0, 2), ...shortItems()];

test('encodePair: continuation tokens are those of context+continuation past the context', () => {
  const { tokenizer: tok } = stories();
  const p = encodePair(tok, 'She had a red', ' ball');
  assert.deepEqual([...p.context, ...p.continuation], tok.encode('She had a red ball', true));
  assert.deepEqual(p.context, tok.encode('She had a red', true));
  // Trailing context whitespace moves to the continuation (lm-eval), so both spellings tokenise alike.
  assert.deepEqual(encodePair(tok, 'She had a red ', 'ball'), p);
  // An empty context conditions on BOS alone.
  assert.deepEqual(encodePair(tok, '', ' ball').context, [tok.bosId]);
  assert.equal(continuationText({ context: 'a', delimiter: null }, 'b'), ' b');
  assert.equal(continuationText({ context: 'a ', delimiter: null }, 'b'), 'b');
  assert.equal(continuationText({ context: 'a', delimiter: null }, ' b'), ' b');
  assert.equal(continuationText({ context: 'a', delimiter: '\n' }, 'b'), '\nb');
});

test('scores equal log-softmax sums computed by hand from the logits (stories260K, ref)', () => {
  const { model, tokenizer } = stories();
  const items = someItems();
  const r = evaluateTasks(model, tokenizer, items, { batch: 4 });
  items.forEach((it, i) => {
    it.choices.forEach((c, j) => {
      const hand = handLoglik(model, tokenizer, it.context.replace(/\s+$/, ''), it.context.match(/\s*$/)![0] + continuationText(it, c), 1e9);
      // 1e-6: the per-token losses come back as f32 (the hand sum stays float64).
      close(r.items[i]!.logliks[j]!, hand, 1e-6, `item ${i} choice ${j}`);
      assert.ok(hand < 0);
    });
  });
  assert.equal(r.n, items.length);
});

test('left truncation to the model context matches the hand computation over the last tokens', () => {
  const { model, tokenizer } = stories();
  const items = readTaskFile(NEXT_WORD).slice(2, 3);
  const maxLength = 12;
  const r = evaluateTasks(model, tokenizer, items, { maxLength });
  items[0]!.choices.forEach((c, j) => {
    close(r.items[0]!.logliks[j]!, handLoglik(model, tokenizer, items[0]!.context, ' ' + c, maxLength), 1e-6, `choice ${j}`);
  });
  // A continuation longer than the window is an error, not a silent cut.
  assert.throws(() => evaluateTasks(model, tokenizer, items, { maxLength: 1 }), /exceed the model's context/);
});

test('batched equals unbatched (right padding is never scored)', () => {
  const { model, tokenizer } = stories();
  const items = someItems();
  const one = evaluateTasks(model, tokenizer, items, { batch: 1 });
  const many = evaluateTasks(model, tokenizer, items, { batch: 7 });
  one.items.forEach((it, i) => it.logliks.forEach((ll, j) => close(many.items[i]!.logliks[j]!, ll, 1e-9, `item ${i} choice ${j}`)));
  assert.deepEqual(many.items.map((i) => [i.pred, i.predNorm]), one.items.map((i) => [i.pred, i.predNorm]));
  const limited = evaluateTasks(model, tokenizer, items, { batch: 3, limit: 2 });
  assert.equal(limited.n, 2);
});

test('acc_norm divides by the choice length in characters; acc and stderr aggregate per item', () => {
  const { model, tokenizer } = stories();
  // Repetition makes the long choice cheap per character but expensive in total.
  const item: TaskItem = {
    context: 'Lily had a red ball. Lily had a red ball. Lily had a red ball. Lily had a',
    choices: ['dog.', 'red ball. Lily had a red ball. Lily had a red ball.'],
    label: 1,
    delimiter: null,
  };
  // Raw sum, per character and per token each pick a different choice here ('big', 'happy.', 'sad.').
  const three: TaskItem = { context: 'She was very', choices: ['happy.', 'sad.', 'big', 'zzz'], label: 0, delimiter: null };
  const items = [item, three, ...shortItems()];
  const r = evaluateTasks(model, tokenizer, items, { batch: 8 });
  assert.deepEqual([r.items[0]!.pred, r.items[0]!.predNorm], [0, 1]);
  assert.deepEqual([r.items[1]!.pred, r.items[1]!.predNorm], [2, 0]);
  const perToken = r.items[1]!.logliks.map((ll, j) => ll / r.items[1]!.tokens[j]!);
  assert.equal(perToken.indexOf(Math.max(...perToken)), 1, 'the item should tell characters from tokens');
  for (const [i, it] of r.items.entries()) {
    const norm = it.logliks.map((ll, j) => ll / items[i]!.choices[j]!.length);
    assert.equal(it.predNorm, norm.indexOf(Math.max(...norm)));
    assert.equal(it.pred, it.logliks.indexOf(Math.max(...it.logliks)));
  }
  const acc = r.items.filter((i) => i.pred === i.label).length / r.n;
  const accNorm = r.items.filter((i) => i.predNorm === i.label).length / r.n;
  assert.equal(r.acc, acc);
  assert.equal(r.acc_norm, accNorm);
  close(r.acc_stderr, Math.sqrt((acc * (1 - acc)) / (r.n - 1)), 1e-12, 'acc_stderr');
  close(r.acc_norm_stderr, Math.sqrt((accNorm * (1 - accNorm)) / (r.n - 1)), 1e-12, 'acc_norm_stderr');
  assert.ok(Number.isNaN(binaryStderr(1, 1)));
});

test('mla eval --json on stories260K: next-word well above chance (measured 0.82; chance 0.25)', () => {
  const r = mla(['eval', STORIES_BIN, '--tokenizer', STORIES_TOK, '--tasks', NEXT_WORD, '--json', '--batch', '16']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const out = JSON.parse(lines[0]!) as Record<string, number | string>;
  assert.equal(out.task, 'next-word');
  assert.equal(out.n, 60);
  for (const k of ['acc', 'acc_norm', 'acc_stderr', 'acc_norm_stderr']) assert.equal(typeof out[k], 'number', k);
  // P(≥ 30 of 60 right by guessing among 4) ≈ 1e-5.
  assert.ok((out.acc as number) >= 0.5, `acc ${out.acc}`);
  assert.ok((out.acc_norm as number) >= 0.5, `acc_norm ${out.acc_norm}`);
  assert.match(r.stderr, /eval next-word \[/); // progress on stderr, results alone on stdout
});

test('mla eval: several task files, a table, --limit, and input errors', () => {
  const table = mla(['eval', STORIES_BIN, '--tokenizer', STORIES_TOK, '--tasks', `${CLOZE},${NEXT_WORD}`, '--limit', '2']);
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, /\| task +\| n +\| acc +\|/);
  assert.match(table.stdout, /\| story-cloze \| +2 \|/);
  assert.match(table.stdout, /\| next-word +\| +2 \|/);

  const { dir, cleanup } = tempDir();
  try {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, jsonl({ context: 'a', choices: ['x', 'y'], label: 0 }, { context: 'a', choices: ['x', 'y'], label: 'Z' }));
    const e1 = mla(['eval', STORIES_BIN, '--tokenizer', STORIES_TOK, '--tasks', bad]);
    assert.equal(e1.status, 1);
    assert.match(e1.stderr, /bad\.jsonl:2: label: expected/);
    const e2 = mla(['eval', STORIES_BIN, '--tokenizer', STORIES_TOK]);
    assert.equal(e2.status, 1);
    assert.match(e2.stderr, /--tasks FILE\.jsonl is required/);
    const e3 = mla(['eval', STORIES_BIN, '--tokenizer', STORIES_TOK, '--tasks', CLOZE, '--batch', '0']);
    assert.equal(e3.status, 1);
    assert.match(e3.stderr, /--batch: expected a positive integer/);
  } finally {
    cleanup();
  }
});

test('compare notes a student whose perplexity is below the teacher\'s while it is far from it', () => {
  const row = (name: string, perplexity: number, kl: number) => ({ name, kvBytesPerToken: 1, compression: 1, parameters: 1, perplexity, kl, acc: null, accNorm: null });
  const notes = belowTeacherNotes([row('teacher', 30.8, 0), row('flat', 26.8, 0.24), row('close', 27.9, 0.13), row('worse', 32.7, 0.38), row('exact', 30.7999, 1e-6)]);
  assert.equal(notes.length, 2);
  assert.match(notes[0]!, /^flat scores a lower perplexity than the teacher \(26\.8\d* against 30\.8\d*\) at KL 0\.2400/);
  assert.match(notes[1]!, /^close /);
  assert.deepEqual(belowTeacherNotes([row('teacher', 6.1, 0), row('student', 7.4, 0.2)]), []);
});

// Multiple-choice task files: JSONL, one item per line, in our own fields or in the fields of the
// lm-evaluation-harness exports people bring (HellaSwag, ARC, MMLU-style). Every line is validated; an error names the
// file, the line and the field.
//
// Accepted fields (the first one present wins):
//   context  "context" | "query" | "ctx" | "question"          a string (may be empty)
//   choices  "choices" | "endings" | "options"                 an array of ≥ 2 non-empty strings, or (ARC) an object
//                                                              {"text": [...], "label": ["A", "B", ...]}
//   label    "label" | "gold" | "answer" | "answerKey"         an integer index, a string of digits ("3", as in
//                                                              HellaSwag's raw data), a letter A–Z (A = 0), or, with
//                                                              ARC's choice object, one of its choice labels
//   target_delimiter (optional)                                 put between the context and each choice; default " "
// Blank lines are skipped; other fields are ignored.

import { readUtf8File } from '../io/text.js';
import { UserError } from '../errors.js';
import { isObject, jsonPreview, parseJsonLines, type JsonObject } from '../io/json.js';

/** One multiple-choice question. */
export interface TaskItem {
  /** Text the choices continue (lm-eval's doc_to_text). */
  context: string;
  /** The candidate continuations as written, without the delimiter. */
  choices: string[];
  /** Index of the correct choice. */
  label: number;
  /** Put between context and choice (lm-eval's target_delimiter); null: the default rule (see tasks.ts). */
  delimiter: string | null;
  /** "FILE:LINE" of the item, for messages about it found later (scoring). */
  where?: string;
}

const CONTEXT_FIELDS = ['context', 'query', 'ctx', 'question'] as const;
const CHOICE_FIELDS = ['choices', 'endings', 'options'] as const;
const LABEL_FIELDS = ['label', 'gold', 'answer', 'answerKey'] as const;

/** The first of `names` present in `o`, with its value. */
function pick(o: JsonObject, names: readonly string[]): { name: string; value: unknown } | null {
  for (const name of names) if (o[name] !== undefined) return { name, value: o[name] };
  return null;
}

const fields = (names: readonly string[]): string => names.map((n) => `"${n}"`).join(', ');

/** Validate one parsed line; `where` is "FILE:LINE". */
export function parseTaskItem(o: unknown, where: string): TaskItem {
  const fail = (field: string, msg: string): UserError => new UserError(`${where}: ${field}: ${msg}`);
  if (!isObject(o)) throw new UserError(`${where}: expected a JSON object, got ${Array.isArray(o) ? 'an array' : describe(o)}`);

  const ctx = pick(o, CONTEXT_FIELDS);
  if (!ctx) throw fail('context', `missing (expected a string in one of ${fields(CONTEXT_FIELDS)})`);
  if (typeof ctx.value !== 'string') throw fail(ctx.name, `expected a string, got ${describe(ctx.value)}`);

  const ch = pick(o, CHOICE_FIELDS);
  if (!ch) throw fail('choices', `missing (expected an array of strings in one of ${fields(CHOICE_FIELDS)})`);
  let choices: unknown = ch.value;
  let choiceLabels: string[] | null = null;
  if (isObject(choices) && ch.name === 'choices') {
    // ARC: {"text": [...], "label": ["A", ...]}
    const { text, label } = choices;
    if (!Array.isArray(text)) throw fail('choices.text', `expected an array of strings, got ${describe(text)}`);
    if (!Array.isArray(label) || label.length !== text.length || !label.every((l) => typeof l === 'string')) {
      throw fail('choices.label', `expected an array of ${text.length} strings (one per choice), got ${describe(label)}`);
    }
    choices = text;
    choiceLabels = label;
  }
  if (!Array.isArray(choices)) throw fail(ch.name, `expected an array of strings, got ${describe(choices)}`);
  if (choices.length < 2) throw fail(ch.name, `expected at least 2 choices, got ${choices.length}`);
  choices.forEach((c, i) => {
    if (typeof c !== 'string') throw fail(`${ch.name}[${i}]`, `expected a string, got ${describe(c)}`);
    if (c.length === 0) throw fail(`${ch.name}[${i}]`, 'expected a non-empty string');
  });
  const cs = choices as string[];

  const lb = pick(o, LABEL_FIELDS);
  if (!lb) throw fail('label', `missing (expected an index or a letter in one of ${fields(LABEL_FIELDS)})`);
  const label = resolveLabel(lb.value, cs.length, choiceLabels);
  if (label === null) {
    const letters = String.fromCharCode(65) + '–' + String.fromCharCode(64 + Math.min(cs.length, 26));
    const forms = choiceLabels ? `one of the choice labels ${JSON.stringify(choiceLabels)}` : `an integer 0..${cs.length - 1} or a letter ${letters}`;
    throw fail(lb.name, `expected ${forms} (${cs.length} choices), got ${describe(lb.value)}`);
  }

  let delimiter: string | null = null;
  if (o.target_delimiter !== undefined) {
    if (typeof o.target_delimiter !== 'string') throw fail('target_delimiter', `expected a string, got ${describe(o.target_delimiter)}`);
    delimiter = o.target_delimiter;
  }
  return { context: ctx.value, choices: cs, label, delimiter };
}

/** An index in [0, n), or null when `v` names no choice. */
function resolveLabel(v: unknown, n: number, choiceLabels: string[] | null): number | null {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v < n ? v : null;
  if (typeof v !== 'string') return null;
  const s = v.trim();
  if (choiceLabels) {
    const i = choiceLabels.indexOf(s);
    return i >= 0 ? i : null;
  }
  if (/^\d+$/.test(s)) {
    const i = Number(s);
    return i < n ? i : null;
  }
  if (/^[A-Z]$/.test(s)) {
    const i = s.charCodeAt(0) - 65;
    return i < n ? i : null;
  }
  return null;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  return jsonPreview(v, 60);
}

/** Parse JSONL text; `file` names it in errors. Throws when a line is malformed or there is no item. */
export function parseTaskJsonl(text: string, file: string): TaskItem[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const items: TaskItem[] = [];
  for (const { value, where } of parseJsonLines(lines, file)) items.push({ ...parseTaskItem(value, where), where });
  if (items.length === 0) throw new UserError(`${file}: no items (expected one JSON object per line)`);
  return items;
}

/** Read and validate a task file. */
export function readTaskFile(file: string): TaskItem[] {
  return parseTaskJsonl(readUtf8File(file, `{tasks} ${file}`), file);
}

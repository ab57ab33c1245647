// Build the bundled multiple-choice task files from the project's own held-out stories, reproducibly (fixed seeds).
// Usage: node dist/bench/make-tasks.js [--text FILE] [--out DIR]
// Writes DIR/story-cloze.jsonl and DIR/next-word.jsonl (format: src/eval/task-file.ts); fixtures/tasks/README.md
// describes the rules. Not a benchmark: it lives in bench/ so tsc compiles it and the files can be rebuilt.

import { parseArgs } from 'node:util';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, type Rng } from '../src/tensor/rng.js';

const { values } = parseArgs({
  options: {
    text: { type: 'string', default: 'fixtures/heldout/stories-heldout.txt' },
    out: { type: 'string', default: 'fixtures/tasks' },
  },
});

interface Item {
  context: string;
  choices: string[];
  label: number;
}

/** One story per paragraph. */
export function stories(text: string): string[] {
  return text.split(/\n\s*\n/).map((s) => s.replace(/\s+/g, ' ').trim()).filter((s) => s !== '');
}

/**
 * Start offsets of a story's sentences. A sentence ends at . ! or ? followed by a space, outside quotation marks; a
 * closing quote after . ! ? ends one when the next word starts with a capital ("Yes!" he said. stays one sentence).
 */
export function sentenceStarts(story: string): number[] {
  const starts = [0];
  let inQuote = false;
  for (let i = 0; i < story.length; i++) {
    const ch = story[i]!;
    if (ch === '"') {
      inQuote = !inQuote;
      if (!inQuote && /[.!?]/.test(story[i - 1] ?? '') && /^ [A-Z"]/.test(story.slice(i + 1, i + 3))) starts.push(i + 2);
    } else if (!inQuote && /[.!?]/.test(ch) && story[i + 1] === ' ') {
      starts.push(i + 2);
    }
  }
  return starts;
}

/** k distinct elements of `pool` drawn with `rng`. */
function sample<T>(pool: readonly T[], k: number, rng: Rng): T[] {
  const a = pool.slice();
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (a.length - i));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, k);
}

/** The true choice and the distractors in a seeded random order. */
function item(context: string, answer: string, distractors: string[], rng: Rng): Item {
  const choices = sample([answer, ...distractors], distractors.length + 1, rng);
  return { context, choices, label: choices.indexOf(answer) };
}

/** Story cloze: the story without its last sentence; the true last sentence against 3 other stories' last sentences. */
export function storyCloze(all: string[], seed = 1): Item[] {
  const rng = mulberry32(seed);
  const split = all.map((s) => {
    const starts = sentenceStarts(s);
    const last = starts[starts.length - 1]!;
    return { context: s.slice(0, last).trimEnd(), ending: s.slice(last) };
  });
  const items: Item[] = [];
  split.forEach((s, i) => {
    if (s.context === '') return;
    const others = split.filter((o, j) => j !== i && o.ending !== s.ending).map((o) => o.ending);
    items.push(item(s.context, s.ending, sample([...new Set(others)], 3, rng), rng));
  });
  return items;
}

/** A determiner, then a lower-case word ending a clause: "the ball." "her kite," (a noun, nearly always). */
const NOUN = /\b(the|his|her|my|their|your|our|its) ([a-z]{3,})(?=[.,!?])/g;
/** "her" is also a pronoun ("heard her cry."), and "the best." heads no noun: such words need other evidence. */
const AMBIGUOUS = new Set(['her']);
const NOT_NOUNS = new Set(['best', 'next', 'same']);
const MIN_CONTEXT = 150;

const hasWord = (text: string, w: string): boolean => new RegExp(`\\b${w}\\b`, 'i').test(text);

/** Nouns of the whole text: words seen after an unambiguous determiner at the end of a clause. */
function nounLexicon(all: string[]): Set<string> {
  const out = new Set<string>();
  for (const s of all) for (const m of s.matchAll(NOUN)) if (!AMBIGUOUS.has(m[1]!) && !NOT_NOUNS.has(m[2]!)) out.add(m[2]!);
  return out;
}

/**
 * Next word (LAMBADA-style): a story prefix ending with a determiner before a clause-final noun that the prefix has
 * already mentioned; the true noun against 3 nouns from other stories that this story never uses. One position per
 * story drawn at random; stories with more positions give a second one, drawn at random, until there are `count`.
 */
export function nextWord(all: string[], seed = 2, count = 60): Item[] {
  const rng = mulberry32(seed);
  const lexicon = nounLexicon(all);
  const nounsOf = all.map((s) => new Set([...s.matchAll(NOUN)].map((m) => m[2]!).filter((n) => lexicon.has(n))));
  const candidates = all.map((s) =>
    [...s.matchAll(NOUN)]
      .map((m) => ({ noun: m[2]!, at: m.index + m[0].length - m[2]!.length }))
      .filter((c) => lexicon.has(c.noun) && c.at >= MIN_CONTEXT && hasWord(s.slice(0, c.at), c.noun)),
  );
  // First pass one per story, second pass one more per story, in a random story order, up to `count`.
  const picks: { story: number; at: number; noun: string }[] = [];
  for (let pass = 0; pass < 2; pass++) {
    for (const i of sample(all.map((_, i) => i), all.length, rng)) {
      const left = candidates[i]!.filter((c) => !picks.some((p) => p.story === i && p.at === c.at));
      if (left.length === 0 || picks.length >= count) continue;
      const c = left[Math.floor(rng() * left.length)]!;
      picks.push({ story: i, ...c });
    }
  }
  picks.sort((a, b) => a.story - b.story || a.at - b.at);
  return picks.map(({ story: i, at, noun }) => {
    const s = all[i]!;
    const pool = new Set<string>();
    nounsOf.forEach((ns, j) => {
      if (j !== i) for (const n of ns) if (!hasWord(s, n)) pool.add(n);
    });
    return item(s.slice(0, at).trimEnd(), noun, sample([...pool].sort(), 3, rng), rng);
  });
}

function writeJsonl(file: string, items: Item[]): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, items.map((it) => JSON.stringify(it)).join('\n') + '\n');
  renameSync(tmp, file);
}

const all = stories(readFileSync(values.text, 'utf8'));
mkdirSync(values.out, { recursive: true });
for (const [name, items] of [['story-cloze', storyCloze(all)], ['next-word', nextWord(all)]] as const) {
  const file = join(values.out, `${name}.jsonl`);
  writeJsonl(file, items);
  process.stdout.write(`${file}: ${items.length} items from ${all.length} stories\n`);
}

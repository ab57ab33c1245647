// Draws our distillation curves beside the reference table (the plain X-EcoMLA recipe measured in PyTorch on
// the lent H100, all parameters trained). Different held-out texts, so both are plotted as perplexity / teacher
// perplexity. Usage: node dist/bench/distill-chart.js RUN_DIR... --teacher-ppl X --out FILE.svg
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { lineChart, type Series } from '../src/report/svg.js';

const { values, positionals } = parseArgs({ options: { 'teacher-ppl': { type: 'string' }, out: { type: 'string' } }, allowPositionals: true });
const teacher = Number(values['teacher-ppl']);
/** Reference (issue 4 table): tokens → perplexity, teacher 5.75 on real TinyStories text. */
const reference: Record<string, [number, number][]> = {
  '4×': [[0, 120], [6.6e6, 8.15], [13.1e6, 7.65], [26.2e6, 6.98], [39.3e6, 6.85]],
  '6.4×': [[0, 168], [6.6e6, 9.28], [13.1e6, 8.44], [26.2e6, 7.91], [39.3e6, 7.68]],
};
const series: Series[] = [];
for (const dir of positionals) {
  const log = readFileSync(`${dir}/log.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tokens: number; eval_ppl?: number });
  series.push({ name: `ours ${basename(dir)}`, points: log.filter((l) => l.eval_ppl !== undefined && l.tokens > 0).map((l) => [l.tokens, l.eval_ppl! / teacher]) });
}
for (const [k, pts] of Object.entries(reference)) {
  series.push({ name: `reference ${k} (plain)`, points: pts.filter(([t]) => t > 0).map(([t, p]) => [t, p / 5.75]), dashed: true });
}
writeFileSync(values.out!, lineChart(series, { title: 'Distillation: held-out perplexity / teacher perplexity', xLabel: 'training tokens', yLabel: 'ppl / teacher ppl', logY: true }));

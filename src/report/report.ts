// report.md with its charts: the comparison table, KV size against perplexity, and for converted models the
// per-layer basis spectra with the kept rank marked. Charts are SVG (open in any browser; GitHub renders them).

import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { lineChart, type Series } from './svg.js';
import { fmtNum } from './table.js';

/** What the spectra charts need of a conversion record (io/run-files.ts reads and validates conversion.json). */
export interface ConversionRecord {
  rope_method: string;
  basis: string;
  nope_init?: string;
  layers: { layer: number; kind: string; kvRank: number | null; ropeDim: number | null; energyKept: number; spectrum: number[] }[];
}

/** Write a file under a temporary name beside it, then rename (a failure leaves no partial chart or report). */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** One model's row of the comparison (eval/compare.ts compareModels measures it). */
export interface CompareRow {
  name: string;
  kvBytesPerToken: number;
  compression: number;
  parameters: number;
  perplexity: number;
  /** Mean KL(teacher ‖ model) per scored token (0 for the teacher). */
  kl: number;
  acc: number | null;
  accNorm: number | null;
}

export function compareTable(rows: CompareRow[]): string {
  const hasTasks = rows.some((r) => r.acc !== null);
  const head = ['model', 'KV bytes/token', 'compression', 'parameters', 'perplexity', 'KL to teacher', ...(hasTasks ? ['acc', 'acc_norm'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    lines.push(`| ${[
      r.name, String(r.kvBytesPerToken), `${r.compression.toFixed(2)}×`, r.parameters.toLocaleString('en-US'), fmtNum(r.perplexity), r.kl.toFixed(4),
      ...(hasTasks ? [r.acc === null ? '-' : r.acc.toFixed(3), r.accNorm === null ? '-' : r.accNorm.toFixed(3)] : []),
    ].join(' | ')} |`);
  }
  return lines.join('\n');
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 60) || 'model';
}

export interface ReportInput {
  title: string;
  rows: CompareRow[];
  /** Conversion records by row name (students made by `mla convert`). */
  conversions: Map<string, ConversionRecord>;
  /** Distillation logs by row name (log.jsonl lines), drawn as curves. */
  curves?: Map<string, { tokens: number; eval_ppl?: number }[]>;
  /** Extra markdown (commands, notes). */
  notes?: string[];
  textFile: string;
}

/** KL (nats per token) above which a student is not the teacher up to rounding (a full-rank conversion is ~1e-6). */
const FAR_KL = 0.01;

/**
 * Students that score a lower perplexity than the teacher while far from it: lower is then not closer. A student can
 * beat a weak teacher on text where the teacher is overconfident by staying flatter (less recovered), so conversions
 * and distillations are ranked by KL to the teacher there, not by perplexity. rows[0] is the teacher.
 */
export function belowTeacherNotes(rows: CompareRow[]): string[] {
  const teacher = rows[0];
  if (!teacher) return [];
  return rows.slice(1).filter((r) => r.perplexity < teacher.perplexity && r.kl >= FAR_KL).map((r) =>
    `${r.name} scores a lower perplexity than the teacher (${fmtNum(r.perplexity)} against ${fmtNum(teacher.perplexity)}) at KL ${r.kl.toFixed(4)} nats/token from it: `
    + 'not closer to the teacher (a flatter student pays less where the teacher is overconfident); rank such students by KL to the teacher.');
}

/** Write report.md and its charts into dir; returns the report's path. */
export function writeReport(dir: string, inp: ReportInput): string {
  mkdirSync(dir, { recursive: true });
  const teacher = inp.rows[0]!;
  const kvSvg = lineChart(
    inp.rows.map((r) => ({ name: r.name, points: [[r.kvBytesPerToken, r.perplexity]] as [number, number][], markersOnly: true })),
    { title: 'KV cache size vs held-out perplexity', xLabel: 'KV cache bytes per token (f32, all layers)', yLabel: 'perplexity', logY: true, logX: true },
  );
  writeAtomic(join(dir, 'kv-vs-ppl.svg'), kvSvg);
  const md: string[] = [
    `# ${inp.title}`,
    '',
    `Held-out text: \`${inp.textFile}\`. Teacher: **${teacher.name}**. KL is the mean KL(teacher ‖ model) per token on the same windows.`,
    '',
    compareTable(inp.rows),
    '',
    ...belowTeacherNotes(inp.rows).map((n) => `Note: ${n}\n`),
    '![KV size against perplexity](kv-vs-ppl.svg)',
    '',
  ];
  if (inp.curves && inp.curves.size > 0) {
    const series: Series[] = [...inp.curves].map(([name, log]) => ({
      name,
      points: log.filter((l) => l.eval_ppl !== undefined).map((l) => [Math.max(l.tokens, 1), l.eval_ppl!] as [number, number]),
    }));
    series.push({ name: 'teacher', points: series.flatMap((s) => s.points.map(([x]) => [x, teacher.perplexity] as [number, number])).sort((a, b) => a[0] - b[0]), dashed: true });
    writeAtomic(join(dir, 'distill-curves.svg'), lineChart(series, { title: 'Distillation: held-out perplexity', xLabel: 'training tokens', yLabel: 'perplexity', logY: true }));
    md.push('## Distillation', '', '![held-out perplexity during distillation](distill-curves.svg)', '');
  }
  for (const [name, rec] of inp.conversions) {
    // Converted layers carry the spectrum of their factorisation; kept layers an empty one (convert.ts LayerReport).
    const mla = rec.layers.filter((l) => l.spectrum.length > 0);
    if (mla.length === 0) continue;
    const series: Series[] = mla.map((l) => {
      const total = l.spectrum.reduce((a, b) => a + Math.max(b, 0), 0) || 1;
      // Directions below 1e-8 of the energy are numerical zeros (rank of the weights); leave them off the chart.
      return { name: `layer ${l.layer}`, points: l.spectrum.map((e, i) => [i + 1, e / total] as [number, number]).filter(([, y]) => y >= 1e-8) };
    });
    const ranks = [...new Set(mla.map((l) => l.kvRank!))];
    const file = `spectra-${slug(name)}.svg`;
    writeAtomic(join(dir, file), lineChart(series, {
      title: `${name}: ${rec.basis} basis spectrum per layer (${rec.rope_method} rope)`, xLabel: 'basis direction', yLabel: 'share of energy', logY: true,
      vlines: ranks.map((r) => ({ x: r + 0.5, label: `kept r_kv=${r}` })),
    }));
    md.push(`## ${name}: spectra`, '', `Energy kept per layer: ${mla.map((l) => `${l.layer}: ${(100 * l.energyKept).toFixed(1)}%`).join(', ')}.`, '', `![spectra](${file})`, '');
  }
  if (inp.notes?.length) md.push('## Notes', '', ...inp.notes, '');
  const path = join(dir, 'report.md');
  writeAtomic(path, md.join('\n'));
  return path;
}

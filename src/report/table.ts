// Plain-text tables for results on stdout.

/** A markdown-style table: header row, then rows; numbers right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmtNum(c) : c)))];
  const widths = header.map((_, j) => Math.max(...cells.map((r) => (r[j] ?? '').length)));
  const line = (r: string[], isNum: boolean[]) =>
    '| ' + r.map((c, j) => (isNum[j] ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join(' | ') + ' |';
  const numCols = header.map((_, j) => rows.length > 0 && rows.every((r) => typeof r[j] === 'number'));
  const out = [line(cells[0]!, header.map(() => false)), '|' + widths.map((w, j) => (numCols[j] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'];
  for (const r of cells.slice(1)) out.push(line(r, numCols));
  return out.join('\n');
}

export function fmtNum(x: number): string {
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(3);
  return x.toFixed(a < 10 ? 4 : a < 1000 ? 2 : 1);
}

// Small SVG charts (no dependencies): line charts for training curves, scatter/line for KV size vs perplexity,
// bar charts for singular-value spectra. Output is a standalone SVG string.

export interface Series {
  name: string;
  points: [number, number][];
  /** Draw markers only (no line). */
  markersOnly?: boolean;
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  logX?: boolean;
  width?: number;
  height?: number;
  /** Vertical marker lines at these x values (e.g. the kept rank). */
  vlines?: { x: number; label: string }[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function ticks(lo: number, hi: number, n = 5): number[] {
  if (hi <= lo) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** Ticks for a log axis spanning [10^lo, 10^hi]: linear nice values when the span is short, decades otherwise. */
function logTicks(lo: number, hi: number): number[] {
  if (hi - lo < 1.3) return ticks(10 ** lo, 10 ** hi, 6).filter((v) => v > 0);
  const out: number[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of hi - lo < 3 ? [1, 2, 5] : [1]) {
      const v = m * 10 ** e;
      if (Math.log10(v) >= lo && Math.log10(v) <= hi) out.push(v);
    }
  }
  return out;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a > 0 && a < 1e-3) return v.toExponential(0);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** A line chart of several series. */
export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 780;
  const H = o.height ?? 420;
  const m = { l: 70, r: 215, t: 40, b: 55 };
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0) && (!o.logX || x > 0));
  const tx = (v: number) => (o.logX ? Math.log10(v) : v);
  const ty = (v: number) => (o.logY ? Math.log10(v) : v);
  let [x0, x1] = pts.length ? [Math.min(...pts.map((p) => tx(p[0]))), Math.max(...pts.map((p) => tx(p[0])))] : [0, 1];
  let [y0, y1] = pts.length ? [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))] : [0, 1];
  for (const v of o.vlines ?? []) {
    x0 = Math.min(x0, tx(v.x));
    x1 = Math.max(x1, tx(v.x));
  }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const X = (v: number) => m.l + ((tx(v) - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v: number) => H - m.b - ((ty(v) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="24" font-size="14">${esc(o.title)}</text>`,
  ];
  const yt = o.logY ? logTicks(y0, y1) : ticks(y0, y1);
  for (const v of yt) {
    const y = Y(v);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" stroke="#ddd"/>`, `<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  const xt = o.logX ? logTicks(x0, x1) : ticks(x0, x1);
  for (const v of xt) {
    const x = X(v);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/>`, `<text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="14" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(m.t + H - m.b) / 2})">${esc(o.yLabel)}${o.logY ? ' (log)' : ''}</text>`,
  );
  for (const v of o.vlines ?? []) {
    const x = X(v.x);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.t}" y2="${H - m.b}" stroke="#000" stroke-dasharray="4 3"/>`, `<text x="${x + 3}" y="${m.t + 12}">${esc(v.label)}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const ps = s.points.filter(([x, y]) => Number.isFinite(y) && (!o.logY || y > 0) && (!o.logX || x > 0));
    if (!s.markersOnly && ps.length > 1) {
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${ps.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    }
    if (s.markersOnly || ps.length <= 30) for (const [x, y] of ps) parts.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${c}"/>`);
    const ly = m.t + 14 + i * 18;
    const label = s.name.length > 30 ? s.name.slice(0, 29) + '…' : s.name;
    parts.push(`<rect x="${W - m.r + 12}" y="${ly - 9}" width="14" height="4" fill="${c}"/>`, `<text x="${W - m.r + 32}" y="${ly - 3}">${esc(label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

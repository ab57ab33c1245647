// Progress on stderr: a bar with rate and ETA on a terminal, a line every few seconds otherwise.
// Results never go here (stdout is for results).

import type { ProgressSink } from '../progress.js';

export class Progress implements ProgressSink {
  private readonly start = Date.now();
  private lastPrint = 0;
  private done = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'it',
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Advance by n units (and redraw at most a few times a second). */
  tick(n = 1, extra = ''): void {
    this.done += n;
    const now = Date.now();
    const tty = this.stream.isTTY;
    if (this.done < this.total && now - this.lastPrint < (tty ? 200 : 5000)) return;
    this.lastPrint = now;
    const secs = (now - this.start) / 1000;
    const rate = this.done / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (this.total - this.done) / rate : 0;
    const frac = this.total > 0 ? Math.min(this.done / this.total, 1) : 1;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const line =
      `${this.label} [${bar}] ${this.done}/${this.total} ${this.unit} ` +
      `${fmtRate(rate)} ${this.unit}/s ETA ${fmtTime(eta)}${extra ? ' ' + extra : ''}`;
    this.stream.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  /** Finish the bar line. */
  end(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}

function fmtRate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r.toFixed(2);
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export { silentProgress, type ProgressSink } from '../progress.js';

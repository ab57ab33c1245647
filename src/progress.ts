// The progress interface every long job reports to (the CLI draws it on stderr; libraries default to silence).
// It lives at the root of src/ because every layer reports progress and none may import the CLI.

export interface ProgressSink {
  /** Advance by n units; `extra` is appended to the line (e.g. the latest evaluation). */
  tick(n?: number, extra?: string): void;
  /** The job is done. */
  end(): void;
}

/** A progress sink that prints nothing (library calls, tests). */
export const silentProgress: ProgressSink = { tick(): void {}, end(): void {} };

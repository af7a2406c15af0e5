// The lines the preflight child prints on stdout, one JSON object each: how far it is while it
// works ({"phase":"load","progress":0.42}), then {"ok":true}. One definition for both ends (and for
// tests that stand in for the child's work).

export interface PreflightStep {
  /** The step the child is in: "runtime", "load", "context", "evaluate". */
  phase: string;
  /** How far the step is, 0..1, when the step says so. */
  fraction: number | null;
}

export function progressLine(phase: string, fraction: number | null = null): string {
  return `${JSON.stringify(fraction === null ? { phase } : { phase, progress: fraction })}\n`;
}

export const OK_LINE = `${JSON.stringify({ ok: true })}\n`;

/** A progress line's step, or null for anything else (the final line, noise). */
export function parseProgressLine(line: string): PreflightStep | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const { phase, progress } = v as { phase?: unknown; progress?: unknown };
  if (typeof phase !== "string" || phase.length > 64) return null;
  const fraction =
    typeof progress === "number" && Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : null;
  return { phase, fraction };
}

// Whether the state can take writes (the outbox and journal logs, the receipts log). A full or
// read-only disk, or one file that cannot be written, is the miner's problem, never a job's: jobs
// already handed over still run and are delivered from memory, no new job is taken until a probe
// succeeds again, and the operator is told once per episode. The probe writes a file in the
// directory and opens every state file (and every file that failed) for append, so one file that
// cannot be written keeps the miner waiting rather than flapping. Mining resumes by itself.
import { constants, promises as fs } from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "../log.js";
import { STORAGE_RECHECK_MS } from "./types.js";

/** Error codes that mean "the disk cannot take this write", not "this job is bad". */
const STORAGE_CODES = new Set(["ENOSPC", "EROFS", "EDQUOT", "EACCES", "EPERM", "EIO", "EMFILE", "ENFILE"]);

export function isStorageError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" && STORAGE_CODES.has(code);
}

/** Codes that no amount of waiting fixes at start: the directory is simply not ours to write. */
const PERMANENT_AT_START = new Set(["EROFS", "EACCES", "EPERM"]);

/** Free space below which no new job is taken: a result, its journal entry and logs must fit. */
export const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

export interface StorageState {
  writable: boolean;
  /** Why not, in words (an errno code and what it means, or the free space left). */
  reason: string | null;
  /** Bytes free on the state directory's filesystem, when known. */
  freeBytes: number | null;
  /** The file that could not be written, when one was named. */
  file?: string | undefined;
}

/** The files an error names: Node's `path` (and `dest` of a rename), else `fallback`. */
function pathsOf(err: unknown, fallback: string | undefined): string[] {
  const e = (typeof err === "object" && err !== null ? err : {}) as { path?: unknown; dest?: unknown };
  const named = [e.path, e.dest].filter((p): p is string => typeof p === "string" && p !== "");
  return named.length > 0 ? named : fallback ? [fallback] : [];
}

/**
 * Can `path` take an append? Opened write-only without writing (an immutable file, a read-only
 * mount or missing permission refuse the open); a file not there yet is tried by creating a probe
 * beside it. Resolves with the errno code that refused it, or null.
 */
async function appendable(path: string): Promise<string | null> {
  try {
    const fh = await fs.open(path, constants.O_WRONLY | constants.O_APPEND);
    await fh.close();
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "EIO";
    if (code !== "ENOENT") return code;
  }
  const probe = join(dirname(path), `.probe-${process.pid}`);
  try {
    const fh = await fs.open(probe, "w", 0o600);
    await fh.close();
    await fs.rm(probe, { force: true });
    return null;
  } catch (err) {
    await fs.rm(probe, { force: true }).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code ?? "EIO";
    // Its directory is not there yet either: made on the first write, which is then the test.
    return code === "ENOENT" ? null : code;
  }
}

export class StateStorageError extends Error {
  override readonly name = "StateStorageError";
}

function explain(code: string | undefined): string {
  switch (code) {
    case "ENOSPC":
      return "the disk is full (ENOSPC)";
    case "EDQUOT":
      return "the disk quota is used up (EDQUOT)";
    case "EROFS":
      return "the filesystem is read-only (EROFS)";
    case "EACCES":
    case "EPERM":
      return `no permission to write (${code})`;
    default:
      return code ? `write failed (${code})` : "write failed";
  }
}

export class StateStorage {
  private state: StorageState = { writable: true, reason: null, freeBytes: null };
  private checking: Promise<boolean> | null = null;
  /** State files every probe opens for append (the stores' logs). */
  private readonly watched = new Set<string>();
  /** Files a write failed on since the last good probe: each must take an append again. */
  private readonly failed = new Set<string>();
  /** Run once a probe finds the state writable again, before the probe resolves. */
  private healedHook: (() => Promise<void>) | null = null;

  constructor(
    /** A directory inside the state directory where probe files may be written. */
    private readonly probeDir: string,
    private readonly log: Logger,
    private readonly minFreeBytes = DEFAULT_MIN_FREE_BYTES,
    /** How long to wait before probing again while the state cannot be written. */
    readonly recheckMs = STORAGE_RECHECK_MS,
  ) {}

  get writable(): boolean {
    return this.state.writable;
  }

  snapshot(): StorageState {
    return { ...this.state };
  }

  /** State files the probe must find appendable, besides the directory itself. */
  watch(paths: Iterable<string>): void {
    for (const p of paths) this.watched.add(p);
  }

  /**
   * Called (and awaited) when a probe finds the state writable after it was not, before that
   * probe resolves: what must happen before new jobs are taken. Its failure changes nothing.
   */
  onHealed(hook: () => Promise<void>): void {
    this.healedHook = hook;
  }

  /**
   * At start: create the directory and probe it. A directory that can never be written (read-only,
   * no permission) throws StateStorageError; a full one only starts the miner in the waiting state.
   */
  async checkAtStart(): Promise<void> {
    try {
      await fs.mkdir(this.probeDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT/ENOTDIR here: a parent that cannot hold the directory (a recursive mkdir on a
      // read-only mount reports ENOENT). Only a full disk is worth waiting for.
      if (code !== "ENOSPC" && code !== "EDQUOT") {
        throw new StateStorageError(
          `the state directory ${this.probeDir} cannot be created: ${explain(code)}; fix its permissions or choose another with --state-dir`,
        );
      }
    }
    await this.check();
    const code = this.lastCode;
    if (!this.state.writable && code && PERMANENT_AT_START.has(code)) {
      throw new StateStorageError(
        `the state directory ${this.probeDir} is not writable: ${explain(code)}; fix its permissions or choose another with --state-dir`,
      );
    }
  }

  private lastCode: string | undefined;

  /**
   * Probe now (write, fsync, remove a small file; check free space; open every state file and
   * every file that failed for append); concurrent calls share one probe.
   */
  check(): Promise<boolean> {
    this.checking ??= this.probeAndHeal().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async probeAndHeal(): Promise<boolean> {
    const was = this.state.writable;
    const ok = await this.probe();
    if (ok && !was && this.healedHook) await this.healedHook().catch(() => undefined);
    return ok;
  }

  /**
   * A real write failed: stop taking jobs until a probe succeeds. `file` is the one written when
   * the error does not name it (a write on an open handle). Other errors are not ours.
   */
  noteFailure(err: unknown, file?: string): boolean {
    if (!isStorageError(err)) return false;
    const code = (err as NodeJS.ErrnoException).code;
    const files = pathsOf(err, file);
    for (const f of files) this.failed.add(f);
    this.set({ writable: false, reason: explain(code), freeBytes: this.state.freeBytes, file: files[0] });
    return true;
  }

  private async probe(): Promise<boolean> {
    let freeBytes: number | null = null;
    try {
      const st = await fs.statfs(this.probeDir);
      freeBytes = Number(st.bavail) * Number(st.bsize);
    } catch {
      // statfs is missing on some filesystems: the probe write below still decides.
    }
    const file = join(this.probeDir, `probe-${process.pid}`);
    try {
      const fh = await fs.open(file, "w", 0o600);
      try {
        await fh.writeFile("probe");
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rm(file, { force: true });
    } catch (err) {
      await fs.rm(file, { force: true }).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      this.lastCode = code;
      this.set({ writable: false, reason: explain(code), freeBytes });
      return false;
    }
    this.lastCode = undefined;
    // The directory takes a new file; each state file, and each that failed, must take an append.
    for (const file of new Set([...this.watched, ...this.failed])) {
      const code = await appendable(file);
      if (code !== null) {
        this.set({ writable: false, reason: explain(code), freeBytes, file });
        return false;
      }
    }
    this.failed.clear();
    if (freeBytes !== null && freeBytes < this.minFreeBytes) {
      const mib = (n: number) => `${Math.floor(n / (1024 * 1024))} MiB`;
      this.set({
        writable: false,
        reason: `only ${mib(freeBytes)} free, below the ${mib(this.minFreeBytes)} headroom`,
        freeBytes,
      });
      return false;
    }
    this.set({ writable: true, reason: null, freeBytes });
    return true;
  }

  /** One log line per change of state, not per failed write. */
  private set(next: StorageState): void {
    const was = this.state.writable;
    this.state = next;
    if (was && !next.writable) {
      this.log.error(
        {
          event: "state_unwritable",
          dir: this.probeDir,
          file: next.file,
          reason: next.reason,
          freeBytes: next.freeBytes,
        },
        `the state cannot be written (${next.reason}${next.file ? `, ${next.file}` : ""}): no new jobs until it can; jobs in hand are delivered from memory. Free space or fix the file's or directory's permissions; mining resumes by itself`,
      );
    } else if (!was && next.writable) {
      this.log.info(
        { event: "state_writable", dir: this.probeDir, freeBytes: next.freeBytes },
        "the state directory is writable again: taking jobs",
      );
    }
  }
}

// A directory of small JSON records, one file each, that survives crashes: write to a temp name,
// fsync, rename over the final name, fsync the directory. Used by the outbox and the claim journal.
//
// Two savings, both safe (docs/architecture.md#durability-rules):
// - A removal is not fsync'd. Lost in a crash, it only brings back a record whose work is done,
//   and recovery treats that as a lost reply: a result already in the outbox wins over its claim,
//   and a resent verdict meets "already done" or "gone". The next put's directory fsync makes
//   earlier removals durable anyway.
// - Concurrent puts share directory fsyncs (group commit): one that starts after a rename
//   covers every rename before it.
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { topLevelStringMember } from "../coordinator/json-span.js";
import { GroupSync } from "./group-sync.js";

/** A record file that could not be read back. */
export interface CorruptRecord {
  /** Where the file now is (renamed `.corrupt` when that was possible). */
  path: string;
  /** Its key, when the damaged file still names it. */
  key: string | null;
  reason: string;
}

export class DurableStore<T> {
  private readonly tmpDir: string;
  private readonly dirSync = new GroupSync(() => this.fsyncDir());
  /** File fsyncs made so far (the bench reports fsyncs per job). */
  private fileSyncs = 0;

  constructor(
    readonly dir: string,
    private readonly validate: (value: unknown) => T | null,
  ) {
    this.tmpDir = join(dir, ".tmp");
  }

  async open(): Promise<void> {
    await fs.mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    // Leftover temp files are writes that never reached their rename: not records.
    for (const name of await fs.readdir(this.tmpDir)) await fs.rm(join(this.tmpDir, name), { force: true });
  }

  /** File name for a key: a hash, so hostile job ids cannot escape the directory. */
  private fileFor(key: string): string {
    return join(this.dir, `${createHash("sha256").update(key).digest("hex").slice(0, 40)}.json`);
  }

  /** Throws at once (not in the promise) on a value that cannot be serialized. */
  put(key: string, value: T): Promise<void> {
    return this.write(key, JSON.stringify({ key, value }));
  }

  private async write(key: string, data: string): Promise<void> {
    const tmp = join(this.tmpDir, `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    // Every call goes through the thread pool, even the small ones: inline, a stalled or failing
    // disk would freeze the event loop, and with it the watchdog, heartbeats and signals.
    try {
      const fh = await fs.open(tmp, "w", 0o600);
      try {
        await fh.writeFile(data);
        await fh.datasync();
        this.fileSyncs++;
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, this.fileFor(key));
    } catch (err) {
      // A full disk must not also fill .tmp with partial writes (open() clears it at start too).
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await this.dirSync.request();
  }

  /** Not fsync'd: see the header. */
  async remove(key: string): Promise<void> {
    await fs.unlink(this.fileFor(key)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  async has(key: string): Promise<boolean> {
    try {
      await fs.access(this.fileFor(key));
      return true;
    } catch {
      return false;
    }
  }

  /** The record under `key`, or null when there is none or it cannot be read back. */
  async get(key: string): Promise<T | null> {
    try {
      const parsed: unknown = JSON.parse(await fs.readFile(this.fileFor(key), "utf8"));
      if (typeof parsed !== "object" || parsed === null) return null;
      const rec = parsed as { key?: unknown; value?: unknown };
      return rec.key === key ? this.validate(rec.value) : null;
    } catch {
      return null;
    }
  }

  /**
   * Every record, plus the files that could not be read back: renamed `.corrupt` (never deleted)
   * and returned with their key when it can still be read, so the caller can act on it.
   */
  async list(): Promise<{ entries: { key: string; value: T }[]; corrupt: CorruptRecord[] }> {
    const entries: { key: string; value: T }[] = [];
    const corrupt: CorruptRecord[] = [];
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return { entries, corrupt };
    }
    for (const name of names.sort()) {
      if (!name.endsWith(".json")) continue;
      const path = join(this.dir, name);
      let text = "";
      try {
        text = await fs.readFile(path, "utf8");
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed === "object" && parsed !== null && "key" in parsed && "value" in parsed) {
          const key = (parsed as { key: unknown }).key;
          const value = this.validate((parsed as { value: unknown }).value);
          if (typeof key === "string" && value !== null) {
            entries.push({ key, value });
            continue;
          }
        }
        throw new Error("unexpected shape");
      } catch (err) {
        const movedTo = `${path}.corrupt`;
        const moved = await fs.rename(path, movedTo).then(
          () => true,
          () => false,
        );
        corrupt.push({
          path: moved ? movedTo : path,
          key: topLevelStringMember(text, "key"),
          reason: (err as NodeJS.ErrnoException).code ?? "unreadable or unexpected content",
        });
      }
    }
    return { entries, corrupt };
  }

  /** fsyncs made so far: one per put for the file; directory syncs are shared (group commit). */
  fsyncCounts(): { files: number; dirs: number } {
    return { files: this.fileSyncs, dirs: this.dirSync.runs };
  }

  async count(): Promise<number> {
    try {
      return (await fs.readdir(this.dir)).filter((n) => n.endsWith(".json")).length;
    } catch {
      return 0;
    }
  }

  private async fsyncDir(): Promise<void> {
    const fh = await fs.open(this.dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

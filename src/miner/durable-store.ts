// Small JSON records that survive crashes (the outbox, the claim journal), kept as one
// append-only log per directory, `records.log` (line format in record-log.ts).
//
// Why a log (docs/architecture.md#durability-rules): a file per record cost a create, write,
// fsync, rename and directory fsync, and an unlink; here every append waiting at the same moment
// shares one write and one fdatasync (group commit): 4 fsyncs a job down to at most 2.
//
// - A put resolves once its line is written and an fdatasync begun after that write returned.
// - A removal appends a tombstone and is not synced: lost in a crash, it only brings back a record
//   whose work is done, which recovery treats as a lost reply. It is not even written at once: it
//   rides with the next batch of puts (the next sync covers it), or goes out after 20 ms.
// - A failed write or sync rejects its whole batch, and the bytes it may have left are cut off
//   before the next append, so the log never holds a half line in the middle.
// - Every failed write is told to `onFault` with its file: the miner takes no job until that file
//   takes writes again (state-storage.ts).
// - Once most of the log is superseded it is rewritten with the live records only (temp file,
//   fdatasync, rename, fsync the directory), between two batches: about once per MiB of records.
// - Opening replays the log, drops a torn last line, moves damaged lines to `records.corrupt`
//   (reported with their key), and takes in records left as files by earlier versions.
import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { appendDurably, fsyncDir, readRange, replaceFile, writeAll } from "../file-io.js";
import { type CorruptRecord, readWithoutOpening } from "./legacy-records.js";
import type { JoinedLines, LinePlace, LogOp } from "./record-log.js";
import { decodeRecord, encodeRecord, joinLines, readLog } from "./record-log.js";
import { readStoreFiles } from "./store-open.js";

export type { CorruptRecord };

export const LOG_NAME = "records.log";
export const CORRUPT_NAME = "records.corrupt";
/** Rewrite the log once this many bytes of it are superseded and they outweigh the live ones. */
const COMPACT_DEAD_BYTES = 1 << 20;
/** How long a removal waits for a put to ride with (a write of its own costs a thread-pool trip). */
const REMOVAL_WAIT_MS = 20;
/** After a failed write, removals alone are tried again this much later (a full disk). */
const RETRY_MS = 1000;

interface Pending {
  bytes: Buffer;
  op: LogOp;
  sync: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

export class DurableStore<T> {
  private readonly tmpDir: string;
  private readonly logPath: string;
  private fh: FileHandle | null = null;
  /** Live keys and where their line is in the log. */
  private index = new Map<string, LinePlace>();
  /** Bytes of whole records in the log; `liveBytes` of them are the live ones. */
  private size = 0;
  private liveBytes = 0;
  private queue: Pending[] = [];
  private writing = false;
  /** File access one at a time: a batch of appends, a compaction, a read. */
  private lock: Promise<void> = Promise.resolve();
  /** A failed batch may have left bytes past `size`: cut them before the next append. */
  private cutPending = false;
  /** A compaction's rename whose directory fsync failed: synced before the next put resolves. */
  private dirUnsynced = false;
  private compactAtDead = COMPACT_DEAD_BYTES;
  private corruptAtOpen: CorruptRecord[] = [];
  /** Damaged lines whose copy to records.corrupt failed: compaction waits for it. */
  private uncopied = "";
  /** Opened and not closed since: a store whose open failed (a full disk) opens on its next write. */
  private wanted = false;
  private readonly syncs = { files: 0, dirs: 0 };
  private removalTimer: ReturnType<typeof setTimeout> | null = null;
  /** Keys removed whose tombstone is not applied to the index yet: they read as removed. */
  private readonly removed = new Set<string>();
  /** The last batch failed: its removals wait RETRY_MS (unless closing: then they are dropped). */
  private batchFailed = false;
  private closing = false;
  /** Told of each write that failed, and the file it was for: the miner pauses taking jobs. */
  onFault: ((err: unknown, file: string) => void) | null = null;

  constructor(
    readonly dir: string,
    private readonly validate: (value: unknown) => T | null,
  ) {
    this.tmpDir = join(dir, ".tmp");
    this.logPath = join(dir, LOG_NAME);
  }

  open(): Promise<void> {
    return this.exclusive(() => this.openLocked());
  }

  /** Write the removals still waiting, then close the log; the store can be opened again. */
  async close(): Promise<void> {
    this.closing = true; // a removal that fails now is dropped, not tried again
    while (this.writing || this.queue.length > 0) {
      this.kick(true);
      await this.lock;
    }
    await this.exclusive(async () => {
      this.closing = false;
      this.wanted = false;
      const fh = this.fh;
      this.fh = null;
      await fh?.close().catch(() => undefined);
    });
  }

  private async openLocked(): Promise<void> {
    this.wanted = true;
    await this.fh?.close().catch(() => undefined);
    this.fh = null;
    const { bytes, contents, legacy, live } = await readStoreFiles(
      this.dir,
      this.logPath,
      this.tmpDir,
      this.validate,
    );
    this.corruptAtOpen = [...legacy.corrupt];
    this.uncopied = contents.damaged.map((d) => `${d.text}\n`).join("");
    const damagedCopied = await this.copyDamaged();
    for (const d of contents.damaged) {
      const path = damagedCopied ? join(this.dir, CORRUPT_NAME) : this.logPath;
      this.corruptAtOpen.push({ path, key: d.key, reason: d.reason });
    }

    if (live.data.length === bytes.length && legacy.files.length === 0) {
      // Nothing to drop or take in (the common start): append to the log as it is.
      this.fh = await fs.open(this.logPath, "a+", 0o600);
      this.indexLines(live);
      // A log just created: its name must be durable before a put counts on it.
      if (bytes.length === 0) {
        await this.syncDir().catch(() => {
          this.dirUnsynced = true;
        });
      }
      return;
    }
    if (damagedCopied) {
      let fh: FileHandle | null = null;
      try {
        fh = await this.replaceLog(live.data);
      } catch (err) {
        if (legacy.files.length > 0) throw err;
        // A full disk at start: the log is used as it is, so its results are still delivered.
      }
      if (fh) {
        // The rename is done: this is the log now, whatever happens next.
        this.fh = fh;
        this.indexLines(live);
        const synced = await this.syncDir().then(
          () => true,
          () => false,
        );
        if (!synced) this.dirUnsynced = true;
        // Only once their records are durable in the log may the old files go. One that stays
        // only comes back as a lost reply on the next start (the log wins for its key).
        if (synced && legacy.files.length > 0) {
          for (const f of legacy.files) await fs.unlink(f).catch(() => undefined);
          await this.syncDir().catch(() => undefined);
        }
        return;
      }
    } else if (legacy.files.length > 0) {
      throw new Error(`cannot keep a copy of the damaged records of ${this.logPath}`);
    }
    const fh = await fs.open(this.logPath, "a+", 0o600);
    try {
      if (contents.tornBytes > 0) await fh.truncate(contents.wholeBytes);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    this.fh = fh;
    this.index = new Map([...contents.live].map(([k, r]) => [k, { offset: r.offset, length: r.length }]));
    this.size = contents.wholeBytes;
    this.liveBytes = [...this.index.values()].reduce((n, p) => n + p.length, 0);
    this.cutPending = false;
  }

  /**
   * Copy the damaged lines found at open to `records.corrupt` (durably) before any rewrite of the
   * log drops them. False while that fails (a full disk): the lines stay in the log meanwhile.
   */
  private async copyDamaged(): Promise<boolean> {
    if (this.uncopied === "") return true;
    try {
      await appendDurably(join(this.dir, CORRUPT_NAME), Buffer.from(this.uncopied, "utf8"));
      this.uncopied = "";
      return true;
    } catch (err) {
      this.onFault?.(err, join(this.dir, CORRUPT_NAME));
      return false;
    }
  }

  /** Throws at once (not in the promise) on a value that cannot be serialized. */
  put(key: string, value: T): Promise<void> {
    const op: LogOp = { op: "put", key, value };
    return this.append(encodeRecord(op), op, true);
  }

  /**
   * Not fsync'd (see the header), and not even written at once: the tombstone goes out with the
   * next batch of puts, or within REMOVAL_WAIT_MS. The store reads as removed from this call on.
   */
  remove(key: string): Promise<void> {
    const op: LogOp = { op: "del", key };
    this.queue.push({ bytes: encodeRecord(op), op, sync: false, resolve: noop, reject: noop });
    this.removed.add(key);
    this.armRemovalTimer(REMOVAL_WAIT_MS);
    return Promise.resolve();
  }

  private armRemovalTimer(ms: number): void {
    this.removalTimer ??= setTimeout(() => {
      this.removalTimer = null;
      if (this.writing) this.armRemovalTimer(REMOVAL_WAIT_MS);
      else this.kick(true);
    }, ms);
  }

  async has(key: string): Promise<boolean> {
    return this.index.has(key) && !this.removed.has(key);
  }

  /** The record under `key`, or null when there is none or it cannot be read back. */
  get(key: string): Promise<T | null> {
    return this.exclusive(() => this.current(key));
  }

  /** Remove `key` only while `test` holds for what it holds (null: nothing readable), in one step:
   * a put made meanwhile is what gets tested, not deleted unseen. */
  removeIf(key: string, test: (current: T | null) => boolean): Promise<void> {
    return this.exclusive(async () => {
      if (test(await this.current(key))) await this.remove(key);
    });
  }

  /** Under the lock (no batch being written): the indexed record, unless a queued op is newer. */
  private async current(key: string): Promise<T | null> {
    const at = this.index.get(key);
    const fh = this.fh;
    let value: T | null = null;
    if (at && fh && !this.removed.has(key)) {
      const rec = decodeRecord((await readRange(fh, at.offset, at.length - 1)).toString("utf8"));
      if (!("error" in rec) && rec.op === "put" && rec.key === key) value = this.validate(rec.value);
    }
    // Queued and not written yet (maybe while the line was read): the latest wins.
    const op = this.queue.findLast((p) => p.op.key === key)?.op;
    return op ? (op.op === "put" ? this.validate(op.value) : null) : value;
  }

  /**
   * Every record, plus those found damaged when the store was opened (kept for the operator and
   * returned once, with their key when it can still be read, so the caller can act on it).
   */
  list(): Promise<{ entries: { key: string; value: T }[]; corrupt: CorruptRecord[] }> {
    return this.exclusive(async () => {
      const corrupt = this.corruptAtOpen;
      this.corruptAtOpen = [];
      const fh = this.fh;
      if (fh) {
        const { live } = readLog(await readRange(fh, 0, this.size), this.validate);
        const entries = [...live].filter(([key]) => !this.removed.has(key));
        return { entries: entries.map(([key, r]) => ({ key, value: r.value })), corrupt };
      }
      // Not open (its open failed: a full disk at start): what is on disk must still be delivered.
      const offline = await readWithoutOpening(this.logPath, this.dir, this.validate);
      return { entries: offline.entries, corrupt: [...corrupt, ...offline.corrupt] };
    });
  }

  async count(): Promise<number> {
    let n = this.index.size;
    for (const key of this.removed) if (this.index.has(key)) n--;
    return n;
  }

  /** fsyncs made so far: of the log (one per batch of puts) and of the directory. */
  fsyncCounts(): { files: number; dirs: number } {
    return { ...this.syncs };
  }

  private exclusive<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.lock.then(fn);
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private append(bytes: Buffer, op: LogOp, sync: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.removed.delete(op.key);
      this.queue.push({ bytes, op, sync, resolve, reject });
      this.kick();
    });
  }

  /** Start a batch now, when one is due: a put waits, or `force` (removals that waited long enough). */
  private kick(force = false): void {
    if (this.writing || this.queue.length === 0) return;
    if (!force && !this.queue.some((p) => p.sync)) return;
    if (this.removalTimer) {
      clearTimeout(this.removalTimer);
      this.removalTimer = null;
    }
    this.writing = true;
    void this.exclusive(() => this.writeBatch()).finally(() => {
      this.writing = false;
      // Queued before the next batch, so a steady stream of appends cannot put it off forever.
      if (this.wantsCompaction()) void this.exclusive(() => this.compact());
      this.kick();
      // Removals left waiting (they came during the batch, or its write failed) keep a timer.
      if (!this.writing && this.queue.length > 0) {
        this.armRemovalTimer(this.batchFailed ? RETRY_MS : REMOVAL_WAIT_MS);
      }
    });
  }

  /** Everything queued so far, in one write and (when a put is among it) one fdatasync. */
  private async writeBatch(): Promise<void> {
    const batch = this.queue.splice(0);
    if (!this.fh && this.wanted) {
      try {
        await this.openLocked();
      } catch (err) {
        this.failBatch(batch, err);
        return;
      }
    }
    const fh = this.fh;
    try {
      if (!fh) throw new Error(`the store in ${this.dir} is not open`);
      if (this.cutPending) {
        await fh.truncate(this.size);
        this.cutPending = false;
      }
      const data =
        batch.length === 1 ? (batch[0] as Pending).bytes : Buffer.concat(batch.map((p) => p.bytes));
      // Thread pool, not appendNow: slowed CPU inference (docs/architecture.md#durability-rules).
      await writeAll(fh, data);
      if (batch.some((p) => p.sync)) {
        if (this.dirUnsynced) await this.syncDir();
        await fh.datasync();
        this.syncs.files++;
      }
    } catch (err) {
      this.cutPending = fh !== null;
      this.failBatch(batch, err);
      return;
    }
    this.batchFailed = false;
    let offset = this.size;
    for (const p of batch) {
      const before = this.index.get(p.op.key);
      if (before) this.liveBytes -= before.length;
      if (p.op.op === "put") {
        this.index.set(p.op.key, { offset, length: p.bytes.length });
        this.liveBytes += p.bytes.length;
      } else this.index.delete(p.op.key);
      offset += p.bytes.length;
    }
    this.size = offset;
    for (const p of batch) {
      // Applied to the index now, unless removed again meanwhile.
      if (p.op.op === "del" && !this.queue.some((q) => q.op.key === p.op.key)) this.removed.delete(p.op.key);
      p.resolve();
    }
  }

  /**
   * A batch that could not be written: its puts are rejected (their callers decide), its
   * removals go back to the head of the queue, in order, to be tried again (no caller waits on
   * them, and a lost one would bring finished work back at the next start).
   */
  private failBatch(batch: Pending[], err: unknown): void {
    this.batchFailed = true;
    this.onFault?.(err, this.logPath);
    const retry =
      this.wanted && !this.closing
        ? batch.filter((p) => p.op.op === "del" && this.removed.has(p.op.key))
        : [];
    this.queue.unshift(...retry);
    for (const p of batch) if (p.op.op === "put") p.reject(err);
  }

  private wantsCompaction(): boolean {
    const dead = this.size - this.liveBytes;
    return dead >= this.compactAtDead && dead > this.liveBytes;
  }

  /** Rewrite the log with the live records only. A failure leaves the old log in use. */
  private async compact(): Promise<void> {
    const old = this.fh;
    if (!old || !this.wantsCompaction()) return;
    if (!(await this.copyDamaged())) {
      this.compactAtDead = this.size - this.liveBytes + COMPACT_DEAD_BYTES;
      return;
    }
    const places = [...this.index];
    let fh: FileHandle;
    let live: JoinedLines;
    try {
      const all = await readRange(old, 0, this.size);
      live = joinLines(places.map(([key, p]) => [key, all.subarray(p.offset, p.offset + p.length)]));
      fh = await this.replaceLog(live.data);
    } catch (err) {
      this.onFault?.(err, join(this.tmpDir, LOG_NAME));
      // Try again once as much more is dead (a full disk must not make every batch retry).
      this.compactAtDead = this.size - this.liveBytes + COMPACT_DEAD_BYTES;
      return;
    }
    // The old file has left the directory: appends go to the new one from here on.
    this.fh = fh;
    this.indexLines(live);
    this.compactAtDead = COMPACT_DEAD_BYTES;
    await old.close().catch(() => undefined);
    await this.syncDir().catch(() => {
      this.dirUnsynced = true;
    });
  }

  /** The rename is done once this returns; the directory fsync that makes it durable is the caller's. */
  private async replaceLog(data: Buffer): Promise<FileHandle> {
    const fh = await replaceFile(join(this.tmpDir, LOG_NAME), this.logPath, data);
    this.syncs.files++;
    return fh;
  }

  /** Take a log made of whole live put lines (as open and compaction write it) as the log. */
  private indexLines(live: JoinedLines): void {
    this.index = live.index;
    this.cutPending = false;
    this.size = live.data.length;
    this.liveBytes = live.data.length;
  }

  private async syncDir(): Promise<void> {
    await fsyncDir(this.dir);
    this.syncs.dirs++;
    this.dirUnsynced = false;
  }
}

const noop = (): void => undefined;

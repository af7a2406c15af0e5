// Whole reads and writes on file handles: a read or write call on a regular file may move fewer
// bytes than asked (a disk filling up, a signal), so each loops until all of it is done.
import nodeFs, { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";

/**
 * Append a small line at once, on this thread (the receipts log, never fsync'd): a few hundred
 * bytes into the page cache take microseconds, less than a thread-pool trip. The durable store
 * writes through the thread pool instead (docs/architecture.md#durability-rules). Called through
 * the module object, so tests can make the disk fail under it.
 */
export function appendNow(fh: FileHandle, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += nodeFs.writeSync(fh.fd, data, written, data.length - written);
}

/** A write to a regular file may be short (a disk filling up): write until all of it is out. */
export async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let written = 0;
  while (written < data.length)
    written += (await fh.write(data, written, data.length - written)).bytesWritten;
}

export async function readRange(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Append and fdatasync (the copy of damaged lines must be safe before the log drops them). */
export async function appendDurably(path: string, data: Buffer): Promise<void> {
  const fh = await fs.open(path, "a", 0o600);
  try {
    await writeAll(fh, data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory: makes the names created, renamed or removed in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Put `data` in place of `path` (a temp file at `tmp`, fdatasync, rename) and return a handle
 * that appends to it. A failure before the rename leaves `path` as it was and no temp file.
 */
export async function replaceFile(tmp: string, path: string, data: Buffer): Promise<FileHandle> {
  await fs.rm(tmp, { force: true });
  const fh = await fs.open(tmp, "a+", 0o600);
  try {
    await writeAll(fh, data);
    await fh.datasync();
    await fs.rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  return fh;
}

/**
 * Replace `path` whole, on this thread (a temp file beside it, fsync, rename): a reader or a
 * crash sees the old bytes or the new, never part of them.
 */
export function writeFileAtomicSync(path: string, data: Buffer | string, mode: number): void {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fd = nodeFs.openSync(tmp, "w", mode);
  try {
    nodeFs.writeFileSync(fd, data);
    nodeFs.fsyncSync(fd);
  } finally {
    nodeFs.closeSync(fd);
  }
  nodeFs.renameSync(tmp, path);
}

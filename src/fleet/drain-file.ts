// The operator's drains outlive a restart: `gpu drain 2` is the word of a person who saw the card
// misbehave, and a reboot must not put it back in service. The drained cards' UUIDs (stable where
// indexes are not) are kept in the host's state directory, replaced whole (temp file, fdatasync,
// rename, directory fsync) so a crash leaves the old list or the new one; read and validated at
// start, where a bad file stops the host with a line naming it rather than mining on a card the
// operator took out.
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import { fsyncDir, replaceFile } from "../file-io.js";

export const DRAINS_FILE = "gpu-drains.json";

export function drainsPath(stateDir: string): string {
  return join(stateDir, DRAINS_FILE);
}

const schema = z
  .object({
    version: z.literal(1),
    /** GPU UUIDs the operator drained. */
    drained: z.array(z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/, "not a GPU UUID")).max(1024),
  })
  .strict();

export class DrainFileError extends Error {}

/** The UUIDs the operator drained, or none when the file does not exist. */
export async function readDrains(stateDir: string): Promise<string[]> {
  const path = drainsPath(stateDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new DrainFileError(`cannot read the operator's GPU drains in ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DrainFileError(
      `${path} is not JSON: fix it (e.g. {"version":1,"drained":["GPU-…"]}) or delete it to undrain every card`,
    );
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new DrainFileError(
      `${path}: ${issue.path.join(".") || "file"}: ${issue.message}; fix it or delete it to undrain every card`,
    );
  }
  return r.data.drained;
}

/** Replace the list (sorted, so the file does not churn). */
export async function writeDrains(stateDir: string, uuids: Iterable<string>): Promise<void> {
  const path = drainsPath(stateDir);
  const body = `${JSON.stringify({ version: 1, drained: [...new Set(uuids)].sort() })}\n`;
  const fh = await replaceFile(`${path}.tmp`, path, Buffer.from(body));
  await fh.close();
  await fsyncDir(dirname(path));
}

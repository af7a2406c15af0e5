// Which workers a host runs: one per GPU (or per group of GPUs for a model that needs several
// cards), chosen from the NVML snapshot by --gpus and --gpu-groups. One worker or none (a CPU
// host, --gpus none) means today's single process: same miner id, same state layout.
import { join } from "node:path";
import type { GpuDevice } from "../gpu/types.js";

export interface WorkerSpec {
  /** Stable key: the first card's UUID (state lives under it, so re-indexing moves nothing). */
  key: string;
  indexes: number[];
  uuids: string[];
  names: string[];
  minerId: string;
  stateDir: string;
}

export class FleetPlanError extends Error {
  override readonly name = "FleetPlanError";
}

export interface PlanOptions {
  /** `all`, `none`, or a comma list of indexes or UUIDs. */
  gpus: string;
  /** `0,1;2,3`: cards (indexes or UUIDs) that serve as one worker, layers split across them. */
  gpuGroups?: string | undefined;
  minerId: string;
  /** `{id}` the miner id, `{n}` the worker's card indexes joined by `-`, `{uuid}` its first UUID. */
  minerIdTemplate: string;
  stateDir: string;
}

export const DEFAULT_MINER_ID_TEMPLATE = "{id}-gpu{n}";

function pick(token: string, devices: GpuDevice[], what: string): GpuDevice {
  const t = token.trim();
  const d = /^\d+$/.test(t) ? devices.find((x) => x.index === Number(t)) : devices.find((x) => x.uuid === t);
  if (!d) {
    const seen = devices.map((x) => `${x.index} (${x.uuid})`).join(", ") || "none";
    throw new FleetPlanError(`${what}: no GPU ${JSON.stringify(t)} on this host (it has: ${seen})`);
  }
  return d;
}

/** The cards --gpus selects, in index order. */
export function selectGpus(spec: string, devices: GpuDevice[]): GpuDevice[] {
  const s = spec.trim();
  if (s === "none") return [];
  if (s === "all") return [...devices].sort((a, b) => a.index - b.index);
  const chosen = new Map<string, GpuDevice>();
  for (const token of s.split(",")) {
    if (token.trim() === "") continue;
    const d = pick(token, devices, "--gpus");
    chosen.set(d.uuid, d);
  }
  if (chosen.size === 0)
    throw new FleetPlanError("--gpus: expected all, none, or a list of indexes or UUIDs");
  return [...chosen.values()].sort((a, b) => a.index - b.index);
}

/** Workers for this host; [] means no GPU worker (mine on the CPU, as a single process). */
export function planWorkers(o: PlanOptions, devices: GpuDevice[]): WorkerSpec[] {
  const selected = selectGpus(o.gpus, devices);
  if (selected.length === 0) return [];
  const groups: GpuDevice[][] = [];
  const grouped = new Set<string>();
  for (const g of (o.gpuGroups ?? "").split(";")) {
    if (g.trim() === "") continue;
    const members = g.split(",").map((t) => pick(t, selected, "--gpu-groups"));
    for (const m of members) {
      if (grouped.has(m.uuid)) throw new FleetPlanError(`--gpu-groups: GPU ${m.index} is in two groups`);
      grouped.add(m.uuid);
    }
    groups.push(members.sort((a, b) => a.index - b.index));
  }
  for (const d of selected) if (!grouped.has(d.uuid)) groups.push([d]);
  groups.sort((a, b) => a[0]!.index - b[0]!.index);
  const single = groups.length === 1;
  const ids = new Set<string>();
  return groups.map((cards) => {
    const n = cards.map((c) => c.index).join("-");
    const minerId = single
      ? o.minerId
      : o.minerIdTemplate
          .replaceAll("{id}", o.minerId)
          .replaceAll("{n}", n)
          .replaceAll("{uuid}", cards[0]!.uuid);
    if (ids.has(minerId)) {
      throw new FleetPlanError(
        `--miner-id-template ${JSON.stringify(o.minerIdTemplate)} gives two workers the id ${minerId}: use {n} or {uuid}`,
      );
    }
    ids.add(minerId);
    return {
      key: cards[0]!.uuid,
      indexes: cards.map((c) => c.index),
      uuids: cards.map((c) => c.uuid),
      names: cards.map((c) => c.name),
      minerId,
      // One worker keeps today's layout; several each get their own outbox and journal.
      stateDir: single
        ? o.stateDir
        : join(o.stateDir, "workers", cards[0]!.uuid.replace(/[^A-Za-z0-9._-]/g, "_")),
    };
  });
}

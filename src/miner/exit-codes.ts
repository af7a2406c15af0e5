// The process exit codes the miner uses, in one table. Service managers and the fleet supervisor
// act on these numbers (restart or give up), so they are part of the CLI's contract.

export const ExitCode = {
  /** Stopped cleanly. */
  ok: 0,
  /** An unexpected error: a bug, worth a restart. */
  unexpected: 1,
  /** Bad settings or credentials: restarting will not help. */
  badSettings: 2,
  /** The backend did not stop after an abort (EX_SOFTWARE): restart to free the GPU. */
  wedged: 70,
  /**
   * NVML sees GPUs but inference cannot compute on them (no CUDA runtime, a binary without code for
   * this GPU, another card than the one owned): mining would pose as a GPU miner (EX_UNAVAILABLE).
   */
  gpuUnusable: 69,
  /**
   * Another live process holds this state directory's lock (EX_TEMPFAIL: it may go away; a restart
   * later is fine, two miners on one directory never are).
   */
  stateLocked: 75,
  /** The state directory can never be written (EX_CANTCREAT, sysexits.h). */
  stateUnwritable: 73,
  /** A second SIGINT/SIGTERM: the operator wants out now (128 + SIGINT). */
  secondSignal: 130,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

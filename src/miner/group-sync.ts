// Group commit for one fsync target (a directory): concurrent callers share fsyncs. A sync already
// running may have begun before a caller's write, so callers arriving meanwhile wait for the next
// one, which then covers all of them. At concurrency c this turns c directory fsyncs into ~2.

export class GroupSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  /** Syncs actually run (the bench reports them per job). */
  runs = 0;

  constructor(private readonly sync: () => Promise<void>) {}

  /** Resolves once a sync that began after this call has finished; rejects with its error. */
  request(): Promise<void> {
    if (this.running === null) {
      this.runs++;
      const run = this.sync().finally(() => {
        this.running = null;
      });
      this.running = run;
      return run;
    }
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.request();
      });
    return this.next;
  }
}

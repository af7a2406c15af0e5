// The poll loop's wait for something to change (a job finished, models changed, shutdown), or at
// most `ms`. A resolver, not an AbortController: this runs once per job, and an abort builds an
// exception. The timer is libuv's, on the monotonic clock.

export class Waker {
  private waiter: (() => void) | null = null;

  /** Until wake() or `ms` pass. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiter = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiter = done;
    });
  }

  wake(): void {
    this.waiter?.();
  }
}

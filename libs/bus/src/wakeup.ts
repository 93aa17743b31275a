/**
 * A resettable signal a loop can sleep on: `wait` returns after `ms`, or as soon
 * as `fire` is called. A fire that happens while nobody waits is remembered until
 * `clear`, so a wake-up arriving between "read" and "sleep" is never lost.
 */
export class Wakeup {
  private pending = false;
  private resolve: (() => void) | undefined;

  fire(): void {
    this.pending = true;
    this.resolve?.();
  }

  clear(): void {
    this.pending = false;
  }

  wait(ms: number): Promise<void> {
    if (this.pending) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.resolve = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.resolve = done;
    });
  }
}

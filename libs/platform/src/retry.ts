/**
 * Retries `fn` with exponential backoff (250 ms doubling to 5 s) until it
 * succeeds or `stop()` turns true. Used at start-up, when a dependency may not
 * answer yet.
 */
export async function retry<T>(fn: () => Promise<T>, onError: (err: Error, delayMs: number) => void, stop: () => boolean): Promise<T> {
  let delay = 250;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (stop()) throw err;
      onError(err as Error, delay);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

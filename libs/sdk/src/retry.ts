/**
 * Exponential backoff with full jitter (a random wait up to base·2^attempt, at most `maxMs`): a
 * fleet that lost config-center at the same moment does not come back at the same moment.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.floor(Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30)));
}

/**
 * Joining and reconnecting when the app sets no `retryBaseMs`/`retryMaxMs`. The cap bounds how long
 * an app waits after config-center is back: at most 15 s, about 7.5 s on average once the backoff
 * reached it; 10 000 instances still come back spread over 15 s (about 700 connections a second).
 */
export const defaultRetry = { baseMs: 1_000, maxMs: 15_000 } as const;

import type { Redis } from "ioredis";

/**
 * Counts failed key redemptions per client (principal and IP) in a fixed
 * window, so nobody can guess keys across many sessions. Redis shares the
 * count between replicas; a single node counts in memory.
 */
export interface FailureLimiter {
  /** True when any of the clients has used up its failures. */
  blocked(clients: string[]): Promise<boolean>;
  fail(clients: string[]): Promise<void>;
}

export function createFailureLimiter(redis: Redis | undefined, prefix: string, maxFailures: number, windowSeconds: number): FailureLimiter {
  const keyOf = (client: string) => `${prefix}key-failures:${client}`;
  if (redis) {
    return {
      async blocked(clients) {
        const counts = await redis.mget(clients.map(keyOf));
        return counts.some((c) => Number(c ?? 0) >= maxFailures);
      },
      async fail(clients) {
        const tx = redis.multi();
        for (const c of clients) tx.incr(keyOf(c)).expire(keyOf(c), windowSeconds, "NX");
        await tx.exec();
      },
    };
  }
  const counts = new Map<string, { n: number; until: number }>();
  const current = (client: string) => {
    const entry = counts.get(client);
    if (!entry || entry.until <= Date.now()) return undefined;
    return entry;
  };
  return {
    async blocked(clients) {
      return clients.some((c) => (current(c)?.n ?? 0) >= maxFailures);
    },
    async fail(clients) {
      for (const c of clients) {
        const entry = current(c) ?? { n: 0, until: Date.now() + windowSeconds * 1000 };
        entry.n++;
        counts.set(c, entry);
      }
    },
  };
}

import type { Redis } from "ioredis";

export interface WindowCount {
  count: number;
  /** Seconds until this window's count starts again from 0. */
  resetsIn: number;
}

/**
 * Counts events per name in fixed windows of `windowSeconds`, shared between replicas through Redis
 * when there is one (INCR with an expiry set on the first event), in memory on a single node.
 */
export interface WindowCounter {
  read(names: string[]): Promise<WindowCount[]>;
  /** Counts one event for each name; returns the counts including it. */
  add(names: string[]): Promise<WindowCount[]>;
  /** Takes back one event counted by `add` (one that turned out not to count). */
  remove(names: string[]): Promise<void>;
}

export function createWindowCounter(redis: Redis | undefined, prefix: string, windowSeconds: number): WindowCounter {
  const keyOf = (name: string) => `${prefix}${name}`;
  if (redis) {
    const counts = (results: Array<[Error | null, unknown]> | null, step: number, countAt: number, ttlAt: number) => {
      const out: WindowCount[] = [];
      for (let i = 0; i < (results?.length ?? 0); i += step) {
        const ttl = Number(results![i + ttlAt]![1]);
        out.push({ count: Number(results![i + countAt]![1] ?? 0), resetsIn: ttl > 0 ? ttl : windowSeconds });
      }
      return out;
    };
    return {
      async read(names) {
        const tx = redis.multi();
        for (const n of names) tx.get(keyOf(n)).ttl(keyOf(n));
        return counts(await tx.exec(), 2, 0, 1);
      },
      async add(names) {
        const tx = redis.multi();
        for (const n of names) tx.incr(keyOf(n)).expire(keyOf(n), windowSeconds, "NX").ttl(keyOf(n));
        return counts(await tx.exec(), 3, 0, 2);
      },
      async remove(names) {
        // Never below 0: a window that ended meanwhile starts again from nothing.
        const tx = redis.multi();
        for (const n of names)
          tx.eval("if (tonumber(redis.call('GET', KEYS[1]) or '0') > 0) then redis.call('DECR', KEYS[1]) end", 1, keyOf(n));
        await tx.exec();
      },
    };
  }
  const windows = new Map<string, { count: number; until: number }>();
  const current = (name: string) => {
    const w = windows.get(name);
    if (w && w.until > Date.now()) return w;
    windows.delete(name);
    return undefined;
  };
  const shown = (w: { count: number; until: number } | undefined): WindowCount =>
    w ? { count: w.count, resetsIn: Math.ceil((w.until - Date.now()) / 1000) } : { count: 0, resetsIn: windowSeconds };
  return {
    async read(names) {
      return names.map((n) => shown(current(n)));
    },
    async add(names) {
      return names.map((n) => {
        const w = current(n) ?? { count: 0, until: Date.now() + windowSeconds * 1000 };
        w.count++;
        windows.set(n, w);
        return shown(w);
      });
    },
    async remove(names) {
      for (const n of names) {
        const w = current(n);
        if (w && w.count > 0) w.count--;
      }
    },
  };
}

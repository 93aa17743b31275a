import type { Logger } from "@opsplane/platform";
import type { RedisCircuit } from "./redis-circuit.js";

/**
 * Failed token requests counted per app id and per client address in fixed windows: once either
 * reaches the limit, token requests for that app id or from that address get 429 with Retry-After
 * until the window ends, whatever the secret. Counts live in Redis when there is one (shared by the
 * replicas) and in this process's memory otherwise, or while Redis does not answer (the circuit is
 * open: no request waits for Redis during an outage). REST and Connect callers are counted alike.
 */
export class TokenThrottle {
  private readonly local = new Map<string, number>();
  private localWindow = 0;

  constructor(
    private readonly redis: RedisCircuit | undefined,
    private readonly prefix: string,
    private readonly log: Logger,
    private readonly o: { limit: number; windowSeconds: number },
  ) {}

  /** Seconds until the window ends when the app id or the address has failed too often in it; else undefined. */
  async retryAfter(appId: string, address: string | undefined): Promise<number | undefined> {
    const { keys, retryAfterSeconds } = this.keysNow(appId, address);
    const counts = await this.counts(keys);
    return counts.some((n) => n >= this.o.limit) ? retryAfterSeconds : undefined;
  }

  /** A wrong secret or an unknown app: one more failure for the app id and for the address. */
  async failed(appId: string, address: string | undefined): Promise<void> {
    const { keys } = this.keysNow(appId, address);
    const redis = this.redis?.client;
    if (redis) {
      try {
        const multi = redis.multi();
        for (const k of keys) multi.incr(k).expire(k, this.o.windowSeconds);
        await multi.exec();
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "token throttle: redis did not answer; counting in memory");
        this.redis?.failed(err);
      }
    }
    for (const k of keys) this.local.set(k, (this.local.get(k) ?? 0) + 1);
  }

  private async counts(keys: string[]): Promise<number[]> {
    const redis = this.redis?.client;
    if (redis) {
      try {
        return (await redis.mget(...keys)).map((v) => Number(v ?? 0));
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "token throttle: redis did not answer; counting in memory");
        this.redis?.failed(err);
      }
    }
    return keys.map((k) => this.local.get(k) ?? 0);
  }

  private keysNow(appId: string, address: string | undefined) {
    const windowMs = this.o.windowSeconds * 1000;
    const now = Date.now();
    const window = Math.floor(now / windowMs);
    // Memory holds only the current window's counts.
    if (window !== this.localWindow) {
      this.local.clear();
      this.localWindow = window;
    }
    return {
      keys: [appId && `app:${appId}`, address && `ip:${address}`].filter(Boolean).map((k) => `${this.prefix}token-failures:${window}:${k}`),
      retryAfterSeconds: Math.max(1, Math.ceil(((window + 1) * windowMs - now) / 1000)),
    };
  }
}

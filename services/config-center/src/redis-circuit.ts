import type { Logger } from "@opsplane/platform";
import type { Redis } from "ioredis";

/** ioredis states in which a command would only wait in its offline queue until its deadline. */
const down: ReadonlySet<string> = new Set(["reconnecting", "close", "end"]);

/**
 * Whether config-center asks Redis at all. Once a command fails (Redis refusing connections, or
 * silent until the command deadline), the circuit opens: the token throttle counts in memory and
 * cache writes are skipped at once, instead of every request waiting out the deadline again for
 * the whole outage. A background PING every `probeMs` closes the circuit when Redis answers again.
 */
export class RedisCircuit {
  private probe: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private readonly recovered: Array<() => void> = [];

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    private readonly probeMs = 1_000,
  ) {}

  /** The client to ask, or undefined while Redis is known not to answer. */
  get client(): Redis | undefined {
    if (this.probe === undefined && down.has(this.redis.status)) this.failed(new Error(`connection ${this.redis.status}`));
    return this.probe === undefined ? this.redis : undefined;
  }

  /** A command failed: stop asking Redis until a probe answers. */
  failed(err: unknown): void {
    if (this.probe !== undefined || this.closed) return;
    this.log.warn({ err: (err as Error).message }, "redis did not answer; not asking it again until a probe does");
    this.probe = setInterval(() => void this.tryProbe(), this.probeMs);
    this.probe.unref();
  }

  /** `fn` runs each time Redis answers again after an outage. */
  onRecovered(fn: () => void): void {
    this.recovered.push(fn);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.probe);
  }

  private async tryProbe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await this.redis.ping();
      if (this.closed) return;
      clearInterval(this.probe);
      this.probe = undefined;
      this.log.info("redis answers again");
      for (const fn of this.recovered) fn();
    } catch {
      // Still down: the next probe asks again.
    } finally {
      this.probing = false;
    }
  }
}

import { netThread } from "./net-thread.js";

export interface NetRedisOptions {
  /** Connecting and every command give up after this long. */
  timeoutMs: number;
  /** Reconnection waits this much longer at each attempt, up to `retryMaxMs`. */
  retryStepMs: number;
  retryMaxMs: number;
}

/** What the client's owner hears: the connection is (again) usable, or it is not and why. */
export interface NetRedisListener {
  ready(): void;
  error(message: string): void;
}

/**
 * An ioredis client on the SDK's network thread: it connects at once and reconnects by itself,
 * and a command fails at once while Redis is down (one retry, no offline queue beyond it). A
 * failed command rejects with the Redis client's message.
 */
export class NetRedis {
  private id: number | undefined;
  private disconnected = false;

  constructor(
    private readonly url: string,
    private readonly options: NetRedisOptions,
    private readonly listener: NetRedisListener,
  ) {
    this.connect();
  }

  async get(key: string): Promise<string | null> {
    return (await this.command("get", [key])) as string | null;
  }

  async mget(...keys: string[]): Promise<Array<string | null>> {
    return (await this.command("mget", keys)) as Array<string | null>;
  }

  disconnect(): void {
    this.disconnected = true;
    if (this.id === undefined) return;
    netThread.post({ t: "redis-close", id: this.id });
    netThread.closed(this.id);
    this.id = undefined;
  }

  private connect(): number {
    const id = netThread.open(
      "redis",
      (id) => ({ t: "redis-open", id, url: this.url, ...this.options }),
      (m) => {
        if (m.t !== "redis") return;
        const e = m.event;
        if (e.type === "ready") return this.listener.ready();
        // A client lost with the network thread: the next command opens another.
        if (e.type === "lost" && this.id === m.id) this.id = undefined;
        this.listener.error(e.message);
      },
    );
    this.id = id;
    return id;
  }

  private async command(command: "get" | "mget", args: string[]): Promise<unknown> {
    if (this.disconnected) throw new Error("the Redis client is closed");
    const redis = this.id ?? this.connect();
    const m = await netThread.call((id) => ({ t: "redis-call", id, redis, command, args }));
    if (m.t !== "redis-reply") throw new Error(`network thread answered a Redis command with ${m.t}`);
    return m.value;
  }
}

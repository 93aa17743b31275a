import { withDeadline } from "@opsplane/store";
import type { Redis } from "ioredis";
import type { Logger } from "./logger.js";

/** A PING a second, each given 800 ms (answered before the next is due): three unanswered in a row and the connection is replaced. */
const intervalMs = 1_000;
const timeoutMs = 800;
const misses = 3;

/**
 * Replaces a Redis connection that stopped answering without being closed. A peer or a middlebox that
 * drops a connection silently (a NAT or conntrack entry gone, a firewall, a vanished host) sends no
 * reset: the kernel retransmits for a quarter of an hour before the socket errors, ioredis sees a
 * connection that is up, and every command on it waits or times out, although a new connection would
 * be answered at once. While the connection is up, a PING every second; after three of them in a row
 * got no answer within 800 ms, the connection is dropped and reopened (commands waiting on
 * it fail as after any lost connection). It stops once the connection is closed for good (quit, disconnect).
 */
export function watchRedisConnection(redis: Redis, name: string, log: Logger): void {
  let missed = 0;
  let asking = false;
  // Connections replaced since one last answered: a hung Redis is told once at warn, each replacement
  // after that at debug, and the first connection that answers again at info.
  let replaced = 0;
  const replace = (message: string) => {
    const fields = { connection: name, unansweredMs: misses * intervalMs };
    if (++replaced === 1) log.warn(fields, message);
    else log.debug({ ...fields, replaced }, message);
    redis.disconnect(true);
  };
  redis.on("ready", () => {
    if (replaced) log.info({ connection: name, replaced }, "redis: connected again");
    replaced = 0;
  });
  // Seconds a connection has been open but not ready: ioredis's ready check has no deadline, so a peer
  // that accepts and never answers (a hung proxy or load balancer) would hold it there for good.
  let unready = 0;
  const timer = setInterval(() => {
    if (redis.status === "connect") {
      if (++unready < misses) return;
      unready = 0;
      replace("redis: a new connection was accepted but never answered; reconnecting");
      return;
    }
    unready = 0;
    if (asking || redis.status !== "ready") return;
    asking = true;
    const silence = new Error("no answer");
    withDeadline(redis.ping(), timeoutMs, () => silence)
      .then(
        () => {
          missed = 0;
        },
        (err: unknown) => {
          // An error answered (LOADING, NOAUTH) is an answer: only silence counts, and only while still connected.
          if (err !== silence) missed = 0;
          if (err !== silence || redis.status !== "ready") return;
          if (++missed < misses) return;
          missed = 0;
          replace("redis: the connection stopped answering without being closed; reconnecting");
        },
      )
      .finally(() => {
        asking = false;
      });
  }, intervalMs);
  timer.unref();
  redis.once("end", () => clearInterval(timer));
}

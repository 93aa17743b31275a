import { Redis } from "ioredis";
import type { Logger } from "./logger.js";
import { watchRedisConnection } from "./redis-watchdog.js";

/**
 * The service's Redis client (REDIS_URL), watched for a connection gone silent. While Redis is down
 * ioredis reports every failed reconnection (every 2 s): the first error of an outage is logged at
 * warn, the others at debug, and the reconnection at info with how many there were.
 */
export function connectRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2 });
  let errors = 0;
  redis.on("error", (err) => {
    errors++;
    if (errors === 1) log.warn({ err: err.message }, "redis error; reconnecting until it answers");
    else log.debug({ err: err.message, errors }, "redis error");
  });
  redis.on("ready", () => {
    if (errors) log.info({ errors }, "redis: connected again");
    errors = 0;
  });
  watchRedisConnection(redis, "service", log);
  return redis;
}

/**
 * Quits politely when Redis answers; a QUIT queued while it is unreachable would wait for a
 * reconnection that may never come, so after a bounded wait the connection is dropped instead.
 */
export async function closeRedis(redis: Redis, waitMs = 1_000): Promise<void> {
  if (redis.status !== "ready") return redis.disconnect();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    redis.quit().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    }),
  ]);
  clearTimeout(timer);
  redis.disconnect();
}

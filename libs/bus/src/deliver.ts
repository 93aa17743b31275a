import { mayNeedStorableJson, type Queryable, storableJson, storableText } from "@opsplane/store";
import type { BusEvent, Handler } from "./bus.js";
import type { BusLogger } from "./logger.js";
import type { Wakeup } from "./wakeup.js";

export interface DeliveryOptions {
  group: string;
  handler: Handler;
  maxAttempts: number;
  retryBackoffMs: number;
  /** Where dead letters are written. */
  pool: Queryable;
  logger: BusLogger;
  /** Fired on close: cuts a back-off short and stops retrying. */
  closed: Wakeup;
  isClosing: () => boolean;
}

const MAX_RETRY_BACKOFF_MS = 5000;

/**
 * Calls the handler until it succeeds, retrying with exponential back-off. After
 * `maxAttempts` failed calls the event is set aside in `bus.dead_letters` and counts
 * as done, so one poison event cannot stall its group. Returns false when closing
 * interrupted the retries: the event stays uncommitted and is delivered again later.
 */
export async function deliver(event: BusEvent, o: DeliveryOptions): Promise<boolean> {
  for (let call = 1; ; call++) {
    const attempt = event.attempt + call - 1;
    try {
      await o.handler({ ...event, attempt });
      return true;
    } catch (err) {
      if (call >= o.maxAttempts) {
        await deadLetter(o.pool, o.group, { ...event, attempt }, err);
        o.logger.error(
          { err, group: o.group, topic: event.topic, eventId: event.id, attempt },
          "bus: handler kept failing; event dead-lettered",
        );
        return true;
      }
      o.logger.warn({ err, group: o.group, topic: event.topic, eventId: event.id, attempt }, "bus: handler failed; retrying");
      if (o.isClosing()) return false;
      await o.closed.wait(Math.min(o.retryBackoffMs * 2 ** (call - 1), MAX_RETRY_BACKOFF_MS));
      if (o.isClosing()) return false;
    }
  }
}

/**
 * Sets an event aside. Text PostgreSQL cannot store (a NUL, a lone surrogate: what made the handler fail, often) is
 * escaped as the platform does elsewhere; refused, the dead letter itself failed and the event was retried for ever.
 */
export async function deadLetter(q: Queryable, group: string, event: BusEvent, err: unknown): Promise<void> {
  const error = storableText(err instanceof Error ? (err.stack ?? err.message) : String(err));
  const json = JSON.stringify(event);
  await q.query(
    `INSERT INTO bus.dead_letters (group_name, topic, event_id, event, error, attempts)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [group, event.topic, event.id, mayNeedStorableJson(json) ? JSON.stringify(storableJson(event)) : json, error, event.attempt],
  );
}

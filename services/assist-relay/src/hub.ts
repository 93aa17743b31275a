import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

/** Which side of a session a message is for. */
export type Side = "developer" | "widget";
type Deliver = (message: string) => void;

/** Counts what the hub moves, for `/metrics`. */
export interface HubMetrics {
  /** Messages handed to sockets on this replica, by where they came from ("local" or "redis"). */
  delivered(via: "local" | "redis", count: number): void;
  /** One Redis PUBLISH carrying `messages` messages. */
  published(messages: number): void;
}

/**
 * Delivers a session's messages to the sockets of one side, wherever they are
 * connected. Messages travel as the JSON strings they were sent as: the relay
 * never re-encodes the stream.
 *
 * Without Redis (single node) delivery is in-process. With Redis:
 * - sockets on the publishing replica get the message at once, without a
 *   round trip through Redis;
 * - for the other replicas, the messages published to one channel during one
 *   event-loop turn go out as one PUBLISH (a batch frame, see `encodeBatch`),
 *   tagged with this replica's id; a replica drops the batches it published
 *   itself (its own echoes), since its sockets already have them;
 * - one subscriber connection per replica, subscribed (reference counted) to
 *   the channels of the sessions it holds sockets for.
 *
 * Order: a channel's messages published by one replica reach every socket,
 * local or remote, in publish order (local delivery is synchronous; the batch
 * keeps the order and Redis keeps the order of one connection's PUBLISHes).
 * Messages from different replicas have no common order, as before; a message
 * sent in reaction to another is still seen after it everywhere.
 */
export interface Hub {
  /** Resolves once local sockets have the message and (with Redis) its batch is published. */
  publish(sessionId: string, to: Side, message: string): Promise<void>;
  /** Resolves once messages published afterwards, on any replica, reach `deliver`. Returns the leave function. */
  join(sessionId: string, side: Side, deliver: Deliver): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/**
 * A batch as sent through Redis: the origin replica's id, then the messages,
 * each preceded by ASCII RS (0x1e). RS never occurs in JSON text (control
 * characters must be escaped inside strings, and it is not JSON whitespace),
 * so no message needs escaping and splitting is a plain `split`.
 */
const RS = "\x1e";
export function encodeBatch(origin: string, messages: readonly string[]): string {
  return origin + RS + messages.join(RS);
}
export function decodeBatch(frame: string): { origin: string; messages: string[] } {
  const parts = frame.split(RS);
  return { origin: parts[0]!, messages: parts.slice(1) };
}

const noMetrics: HubMetrics = { delivered() {}, published() {} };

export function createHub(redis: Redis | undefined, prefix: string, metrics: HubMetrics = noMetrics): Hub {
  const replicaId = randomUUID();
  const channelOf = (sessionId: string, side: Side) => `${prefix}${sessionId}:${side}`;
  const local = new Map<string, { sockets: Set<Deliver>; subscribed: Promise<unknown> }>();
  const deliverLocal = (channel: string, messages: readonly string[], via: "local" | "redis") => {
    const sockets = local.get(channel)?.sockets;
    if (!sockets?.size) return;
    for (const m of messages) for (const d of sockets) d(m);
    metrics.delivered(via, messages.length * sockets.size);
  };

  if (!redis) {
    return {
      async publish(sessionId, to, message) {
        deliverLocal(channelOf(sessionId, to), [message], "local");
      },
      async join(sessionId, side, deliver) {
        const channel = channelOf(sessionId, side);
        const entry = local.get(channel) ?? { sockets: new Set<Deliver>(), subscribed: Promise.resolve() };
        local.set(channel, entry);
        entry.sockets.add(deliver);
        return async () => {
          const current = local.get(channel);
          current?.sockets.delete(deliver);
          if (current?.sockets.size === 0) local.delete(channel);
        };
      },
      async close() {
        local.clear();
      },
    };
  }

  // Auto-pipelining puts the PUBLISHes of one turn (one per busy channel) into one write.
  const publisher = redis.duplicate({ enableAutoPipelining: true });
  publisher.on("error", () => {});
  const subscriber = redis.duplicate();
  subscriber.on("error", () => {});
  subscriber.on("message", (channel: string, frame: string) => {
    // Cheap test first: most frames a busy replica receives are its own echoes.
    if (frame.startsWith(replicaId)) return;
    deliverLocal(channel, decodeBatch(frame).messages, "redis");
  });

  // Messages waiting for this turn's PUBLISH, per channel, in publish order.
  let pending = new Map<string, { messages: string[]; sent: Promise<void>; resolve: () => void; reject: (e: unknown) => void }>();
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batches = pending;
    pending = new Map();
    for (const [channel, batch] of batches) {
      metrics.published(batch.messages.length);
      publisher.publish(channel, encodeBatch(replicaId, batch.messages)).then(() => batch.resolve(), batch.reject);
    }
  };

  return {
    publish(sessionId, to, message) {
      const channel = channelOf(sessionId, to);
      deliverLocal(channel, [message], "local");
      let batch = pending.get(channel);
      if (!batch) {
        let resolve!: () => void;
        let reject!: (e: unknown) => void;
        const sent = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        batch = { messages: [], sent, resolve, reject };
        pending.set(channel, batch);
      }
      batch.messages.push(message);
      if (!scheduled) {
        scheduled = true;
        // After the I/O callbacks of this turn: every frame read in it joins the batch.
        setImmediate(flush);
      }
      return batch.sent;
    },
    async join(sessionId, side, deliver) {
      const channel = channelOf(sessionId, side);
      let entry = local.get(channel);
      if (!entry) {
        entry = { sockets: new Set(), subscribed: subscriber.subscribe(channel) };
        local.set(channel, entry);
      }
      entry.sockets.add(deliver);
      await entry.subscribed;
      return async () => {
        const current = local.get(channel);
        current?.sockets.delete(deliver);
        if (current && current.sockets.size === 0) {
          local.delete(channel);
          // Commands on one connection run in order, so a later join's SUBSCRIBE follows this UNSUBSCRIBE.
          await subscriber.unsubscribe(channel).catch(() => {});
        }
      };
    },
    async close() {
      const unsent = [...pending.values()].map((b) => b.sent);
      if (scheduled) flush();
      await Promise.allSettled(unsent);
      local.clear();
      await subscriber.quit().catch(() => {});
      await publisher.quit().catch(() => {});
    },
  };
}

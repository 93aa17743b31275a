import type { RegisterOutcome } from "./dispatcher-client.js";

/** One business object seen in this environment: callbacks for it should come here. */
export interface Registration {
  rule: string;
  id: string;
}

export interface ReporterOptions {
  /** Throws when the batch should be sent again later; refused registrations are final. */
  send(batch: Registration[]): Promise<RegisterOutcome>;
  flushIntervalMs: number;
  batchSize: number;
  /** Most registrations held while the dispatcher does not answer; more are dropped and counted. */
  maxQueue: number;
  onError(err: Error): void;
  onRefused(outcome: Required<RegisterOutcome>): void;
}

export interface Reporter {
  add(r: Registration): void;
  /** Sends everything queued now (also used at shutdown). */
  flush(): Promise<void>;
  stop(): void;
  readonly sent: number;
  /** Registrations the dispatcher refused for good (e.g. ids this environment may not claim); not sent again. */
  readonly refused: number;
  readonly dropped: number;
  readonly queued: number;
}

/**
 * Batches registrations and sends them off the app's request path, on an
 * unref'd timer so the agent never keeps the app alive. When the dispatcher is
 * down the queue stays bounded: the oldest entries survive, new ones are dropped.
 */
export function createReporter(o: ReporterOptions): Reporter {
  let queue: Registration[] = [];
  let sent = 0;
  let refused = 0;
  let dropped = 0;
  let inFlight: Promise<void> | undefined;

  const flushOnce = async () => {
    while (queue.length) {
      const batch = queue.slice(0, o.batchSize);
      queue = queue.slice(batch.length);
      try {
        const outcome = await o.send(batch);
        sent += batch.length - outcome.refused;
        refused += outcome.refused;
        if (outcome.reason) o.onRefused({ refused: outcome.refused, reason: outcome.reason });
      } catch (err) {
        const room = Math.max(0, o.maxQueue - queue.length);
        dropped += Math.max(0, batch.length - room);
        queue = [...batch.slice(0, room), ...queue];
        o.onError(err as Error);
        return;
      }
    }
  };
  const flush = () => {
    inFlight ??= flushOnce().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const timer = setInterval(() => void flush(), o.flushIntervalMs);
  timer.unref();

  return {
    add(r) {
      if (queue.length >= o.maxQueue) {
        dropped++;
        return;
      }
      queue.push(r);
      if (queue.length >= o.batchSize) void flush();
    },
    flush,
    stop: () => clearInterval(timer),
    get sent() {
      return sent;
    },
    get refused() {
      return refused;
    },
    get dropped() {
      return dropped;
    },
    get queued() {
      return queue.length;
    },
  };
}

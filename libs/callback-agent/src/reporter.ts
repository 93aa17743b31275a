import type { RegisterOutcome } from "./dispatcher-client.js";

/** One business object seen in this environment: callbacks for it should come here. */
export interface Registration {
  rule: string;
  id: string;
}

export interface ReporterOptions {
  /** Throws when the batch should be sent again later; refused registrations are final. */
  send(batch: Registration[]): Promise<RegisterOutcome>;
  /** After a failed send, how long to wait before sending again (the queue is kept meanwhile). */
  retryMs: number;
  batchSize: number;
  /** Most registrations held while the dispatcher does not answer; more are dropped and counted. */
  maxQueue: number;
  onError(err: Error): void;
  /** A batch the dispatcher answered, with what it refused of it if anything. */
  onSent(outcome: RegisterOutcome): void;
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
 * Sends registrations off the app's request path as soon as it can: an id found while no report is
 * in flight leaves at the end of the current event-loop turn (with any others found in that turn);
 * ids found while one is in flight queue up and leave together when it returns. So a report waits
 * for nothing when the agent is idle, and batches form only under load. After a failure the queue
 * is kept (bounded: the oldest entries survive, new ones are dropped) and sent again after
 * `retryMs`, on an unref'd timer so the agent never keeps the app alive.
 */
export function createReporter(o: ReporterOptions): Reporter {
  let queue: Registration[] = [];
  let sent = 0;
  let refused = 0;
  let dropped = 0;
  let inFlight: Promise<void> | undefined;
  let scheduled = false;
  let retryAt = 0;

  const flushOnce = async () => {
    while (queue.length) {
      const batch = queue.slice(0, o.batchSize);
      queue = queue.slice(batch.length);
      try {
        const outcome = await o.send(batch);
        sent += batch.length - outcome.refused;
        refused += outcome.refused;
        o.onSent(outcome);
        if (outcome.reason) o.onRefused({ refused: outcome.refused, reason: outcome.reason });
        retryAt = 0;
      } catch (err) {
        const room = Math.max(0, o.maxQueue - queue.length);
        dropped += Math.max(0, batch.length - room);
        queue = [...batch.slice(0, room), ...queue];
        retryAt = Date.now() + o.retryMs;
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
  // Ids found in one turn (a burst of requests parsed together) leave as one report.
  const sendSoon = () => {
    if (scheduled || inFlight || Date.now() < retryAt) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void flush();
    }).unref();
  };
  const timer = setInterval(() => {
    if (queue.length && Date.now() >= retryAt) void flush();
  }, o.retryMs);
  timer.unref();

  return {
    add(r) {
      if (queue.length >= o.maxQueue) {
        dropped++;
        return;
      }
      queue.push(r);
      sendSoon();
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

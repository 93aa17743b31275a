import type { EventEnvelope } from "@opsplane/contracts";
import type { Queryable } from "@opsplane/store";

/** An event as a consumer receives it. */
export interface BusEvent extends EventEnvelope {
  topic: string;
  /** Delivery attempt for this group, starting at 1; above 1 means a redelivery. */
  attempt: number;
}

export interface PublishInput {
  topic: string;
  /** CloudEvents type; by convention the proto message name, e.g. "ops.v1.AuditRecorded". */
  type: string;
  data: unknown;
  /** Partition key: events with the same key reach each group in publish order. */
  key?: string;
  subject?: string;
  /** Event id; generated (UUID v4) when absent. Consumers de-duplicate on it; re-publishing an id is a no-op. */
  id?: string;
  /** W3C trace context; when absent the bus asks its `traceContext` option (OpenTelemetry wiring). */
  traceparent?: string;
  tracestate?: string;
}

export interface PublishOptions {
  /**
   * A client holding an open transaction: the events are written in it and
   * become visible only if it commits (transactional outbox). Without it the
   * events are written on their own, batched with other concurrent publishes.
   */
  tx?: Queryable;
}

export type Handler = (event: BusEvent) => Promise<void>;

export interface SubscribeOptions {
  /** Consumer group: each group sees every event once (at least once); members of one group share the work. */
  group: string;
  topics: string[];
  handler: Handler;
  /** Most events fetched at a time. */
  batchSize?: number;
  /** Handler calls before an event is set aside in `bus.dead_letters` so the group can go on (default 5). */
  maxAttempts?: number;
  /** Wait before the first retry of a failed handler; doubles on each retry up to 5 s (default 100). */
  retryBackoffMs?: number;
  /** Where a group with no committed position starts: every retained event (default) or only events published from now on. */
  fromBeginning?: boolean;
}

export interface Subscription {
  /** Stops fetching, waits for the handler in flight, commits what was handled. */
  close(): Promise<void>;
}

export interface Bus {
  readonly kind: "postgres" | "kafka";
  publish(events: PublishInput | PublishInput[], opts?: PublishOptions): Promise<void>;
  subscribe(opts: SubscribeOptions): Promise<Subscription>;
  /** Throws when the bus cannot reach its backend; used by /readyz. */
  check(): Promise<void>;
  /** Closes every subscription (draining in-flight handlers), then the connections. */
  close(): Promise<void>;
}

import { BatchWriter, type BatchWriterLogger, type DropReason, mayNeedStorableJson, type Pool, storableJson } from "@opsplane/store";

export type RecordedKind = "rrweb" | "console" | "network";

interface RecordedEvent {
  sessionId: string;
  kind: RecordedKind;
  payload: string;
}

/** Recording held in memory while PostgreSQL is down or slow (JSON text, mostly ASCII: length ≈ bytes); past this, new events are dropped and counted. */
const maxQueuedBytes = 64 * 1024 * 1024;

/**
 * Keeps each session's stream for replay. Messages are buffered and written
 * in one multi-row insert per flush, so a busy page costs a few inserts a
 * second instead of one per event. Strings PostgreSQL cannot store are escaped
 * as a message is added; an event it still refuses is dropped alone and
 * counted, so one session's frame never costs another's recording, and an
 * outage keeps the events and retries (see BatchWriter).
 */
export class Recorder {
  private readonly writer: BatchWriter<RecordedEvent>;

  constructor(
    private readonly pool: Pool,
    log: BatchWriterLogger,
    onDrop: (reason: DropReason, count: number) => void,
    /** Longest close() waits for PostgreSQL (see BatchWriter). */
    closeTimeoutMs: number,
    maxBatch = 500,
    flushEveryMs = 250,
  ) {
    this.writer = new BatchWriter({
      what: "recording events",
      write: async (batch) => {
        await this.pool.query(
          "INSERT INTO recording_events (session_id, kind, payload) SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])",
          [batch.map((b) => b.sessionId), batch.map((b) => b.kind), batch.map((b) => b.payload)],
        );
      },
      describe: (e) => ({ sessionId: e.sessionId, kind: e.kind, length: e.payload.length }),
      log,
      flushMs: flushEveryMs,
      maxBatch,
      maxQueued: maxQueuedBytes,
      closeTimeoutMs,
      sizeOf: (e) => e.payload.length,
      onDrop,
    });
  }

  /** Queues one widget frame; `payload` is its JSON text as received. */
  add(sessionId: string, kind: RecordedKind, payload: string): void {
    const storable = mayNeedStorableJson(payload) ? JSON.stringify(storableJson(JSON.parse(payload))) : payload;
    this.writer.add({ sessionId, kind, payload: storable });
  }

  /** Writes what is buffered; resolves when everything added before the call is stored, or could not be. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Writes what is buffered; rejects, naming the count, when some of it could not be. */
  close(): Promise<void> {
    return this.writer.close();
  }

  /** The session's stream in arrival order, for replay. */
  async read(sessionId: string, afterId: number, limit: number) {
    const { rows } = await this.pool.query<{ id: string; kind: RecordedKind; payload: unknown; received_at: Date }>(
      "SELECT id, kind, payload, received_at FROM recording_events WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3",
      [sessionId, afterId, limit],
    );
    return rows.map((r) => ({ id: Number(r.id), kind: r.kind, payload: r.payload, receivedAt: r.received_at.toISOString() }));
  }
}

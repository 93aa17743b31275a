import type { Logger } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";

export type RecordedKind = "rrweb" | "console" | "network";

/**
 * Keeps each session's stream for replay. Messages are buffered and written
 * in one multi-row insert per flush, so a busy page costs a few inserts a
 * second instead of one per event.
 */
export class Recorder {
  private buffer: Array<{ sessionId: string; kind: RecordedKind; payload: string }> = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly maxBatch = 500,
    flushEveryMs = 250,
  ) {
    this.timer = setInterval(() => void this.flush(), flushEveryMs);
    this.timer.unref();
  }

  add(sessionId: string, kind: RecordedKind, payload: string): void {
    this.buffer.push({ sessionId, kind, payload });
    if (this.buffer.length >= this.maxBatch) void this.flush();
  }

  /** Writes what is buffered; resolves when everything added before the call is stored. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.buffer.length === 0) return;
      const batch = this.buffer;
      this.buffer = [];
      try {
        await this.pool.query(
          "INSERT INTO recording_events (session_id, kind, payload) SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])",
          [batch.map((b) => b.sessionId), batch.map((b) => b.kind), batch.map((b) => b.payload)],
        );
      } catch (err) {
        this.log.error({ err, events: batch.length }, "could not store recording events");
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
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

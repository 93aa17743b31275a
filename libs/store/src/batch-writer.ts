/** A failure its thrower has logged already: whoever catches it reports it without a second line. */
export class LoggedFailure extends Error {}

/** The slice of a pino logger the batch writer writes to. */
export interface BatchWriterLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/**
 * Why rows were not written: the queue was full (PostgreSQL down or too slow), PostgreSQL refused
 * the row itself, or it was still queued when the writer closed and PostgreSQL could not take it.
 */
export const dropReasons = ["queue_full", "unstorable", "shutdown"] as const;
export type DropReason = (typeof dropReasons)[number];

export interface BatchWriterOptions<T> {
  /** What the rows are, plural, for log lines: "decisions". */
  what: string;
  /** Writes rows in one statement or transaction; rejects when PostgreSQL takes none of them. */
  write(rows: T[]): Promise<void>;
  /** Fields naming one row in the log line of a row PostgreSQL refused. */
  describe(row: T): object;
  log: BatchWriterLogger;
  flushMs: number;
  maxBatch: number;
  /** Most rows (or units of `sizeOf`) held while PostgreSQL is slow or down; past it new rows are dropped. */
  maxQueued: number;
  /**
   * Longest close() waits for PostgreSQL. Shorter than the service's own shutdown bound (about half
   * of it), so a hung database still lets close() log what was lost before the process is killed.
   */
  closeTimeoutMs: number;
  /** A row's share of `maxQueued`: 1 (a count) unless given, e.g. its bytes. */
  sizeOf?(row: T): number;
  onDrop(reason: DropReason, count: number): void;
}

// A row's own data is at fault: data exception, integrity constraint violation, program limit exceeded
// (an index row too large). Writing it again cannot succeed; anything else (connection, shutdown,
// resources, serialization) may, so those rows are kept.
const dataErrorClasses = new Set(["22", "23", "54"]);

/** Whether PostgreSQL refused a statement for the data it was given (SQLSTATE classes 22, 23, 54). */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && dataErrorClasses.has(code.slice(0, 2));
}

const firstRetryMs = 250;
const maxRetryMs = 5_000;
/** Rows named in the log line of one flush's refused rows. */
const maxRowsLogged = 10;

/**
 * Queues rows in memory and writes them in batches off the caller's path. A batch PostgreSQL
 * refuses for its data is halved until the refused rows are alone; those are dropped, counted and
 * logged, and the rest are written. Any other failure (PostgreSQL down) keeps every row and retries
 * with backoff (250 ms doubling to 5 s), with one warning per outage. Closing writes what is queued,
 * and rejects, naming the count, when some could not be written or PostgreSQL did not confirm them
 * within `closeTimeoutMs` (a hung database).
 */
export class BatchWriter<T> {
  private queue: T[] = [];
  private queuedSize = 0;
  private draining: Promise<void> | undefined;
  private failedAttempts = 0;
  private retryAt = 0;
  private fullWarned = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: BatchWriterOptions<T>) {
    this.timer = setInterval(() => {
      if (!this.draining && Date.now() >= this.retryAt) void this.flush();
    }, o.flushMs);
    this.timer.unref();
  }

  /** Queues a row; false when the queue is full and it was dropped. */
  add(row: T): boolean {
    const size = this.o.sizeOf?.(row) ?? 1;
    if (this.queuedSize + size > this.o.maxQueued) {
      this.o.onDrop("queue_full", 1);
      if (!this.fullWarned)
        this.o.log.warn({ queued: this.queue.length }, `${this.o.what} queue full; new ones are dropped until PostgreSQL catches up`);
      this.fullWarned = true;
      return false;
    }
    this.queue.push(row);
    this.queuedSize += size;
    return true;
  }

  /** Writes what is queued now, without waiting for a retry's backoff; never rejects (failures are logged). */
  flush(): Promise<void> {
    // A flush under way wrote what was queued when it began: rows added since get one of their own after it.
    if (this.draining) return this.draining.then(() => this.flush());
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /**
   * Stops the timer and writes what is queued, for at most `closeTimeoutMs`; rejects when some rows
   * could not be written (they are dropped) or were not confirmed in time (queued or in flight).
   */
  async close(): Promise<void> {
    clearInterval(this.timer);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      // A write in flight may fail; the rows it leaves get one more attempt of their own.
      (async () => {
        await this.draining;
        // Rows added while a flush writes are the next one's: flush until none is left, or PostgreSQL fails.
        do await this.flush();
        while (this.queue.length && !this.failedAttempts);
        return false;
      })(),
      new Promise<true>((resolve) => {
        timer = setTimeout(resolve, this.o.closeTimeoutMs, true);
      }),
    ]);
    clearTimeout(timer);
    // Rows leave the queue only once written, so it holds those in flight too.
    const unwritten = this.queue.length;
    if (!unwritten) return;
    this.o.onDrop("shutdown", unwritten);
    const message = timedOut
      ? `${this.o.what} lost at shutdown: ${unwritten} not confirmed written within ${this.o.closeTimeoutMs} ms`
      : `${this.o.what} lost at shutdown: ${unwritten} could not be written`;
    this.o.log.error({ unwritten }, message);
    throw new LoggedFailure(message);
  }

  private async drain(): Promise<void> {
    const refused: Array<{ row: T; err: unknown }> = [];
    try {
      // What is queued when the flush starts; rows added while it writes wait for the next tick. Under
      // load, looping until the queue is empty wrote back to back whatever came during the last write
      // (a few rows each, one round trip and one commit per few rows, most of a recorded row's cost).
      for (let left = this.queue.length; left > 0 && this.queue.length; ) {
        const batch = this.queue.slice(0, Math.min(left, this.o.maxBatch));
        await this.writeIsolating(batch, refused);
        left -= batch.length;
      }
      if (this.failedAttempts) this.o.log.info({ failedAttempts: this.failedAttempts }, `writing ${this.o.what} again`);
      this.failedAttempts = 0;
      this.retryAt = 0;
      this.fullWarned = false;
    } catch (err) {
      this.failedAttempts++;
      const retryInMs = Math.min(firstRetryMs * 2 ** (this.failedAttempts - 1), maxRetryMs);
      this.retryAt = Date.now() + retryInMs;
      const fields = { err, queued: this.queue.length };
      this.o.log.debug({ ...fields, retryInMs }, `could not write ${this.o.what}; retry ${this.failedAttempts} in ${retryInMs} ms`);
      if (this.failedAttempts === 1)
        this.o.log.warn(fields, `could not write ${this.o.what}; keeping them and retrying until PostgreSQL takes them`);
    } finally {
      if (refused.length) this.reportRefused(refused);
    }
  }

  /**
   * Writes `rows`, the head of the queue, and takes them off it. On a data error the rows are
   * written in halves, down to single rows, which are taken off and added to `refused`.
   * Any other error is thrown with the rows not yet written still queued.
   */
  private async writeIsolating(rows: T[], refused: Array<{ row: T; err: unknown }>): Promise<void> {
    try {
      await this.o.write(rows);
    } catch (err) {
      if (!isDataError(err)) throw err;
      if (rows.length === 1) {
        refused.push({ row: rows[0]!, err });
        this.shift(1);
        return;
      }
      const half = Math.ceil(rows.length / 2);
      await this.writeIsolating(rows.slice(0, half), refused);
      await this.writeIsolating(rows.slice(half), refused);
      return;
    }
    this.shift(rows.length);
  }

  private shift(count: number): void {
    for (const row of this.queue.slice(0, count)) this.queuedSize -= this.o.sizeOf?.(row) ?? 1;
    this.queue = this.queue.slice(count);
  }

  private reportRefused(refused: Array<{ row: T; err: unknown }>): void {
    this.o.onDrop("unstorable", refused.length);
    const rows = refused.slice(0, maxRowsLogged).map(({ row, err }) => ({
      ...this.o.describe(row),
      code: (err as { code?: unknown }).code,
      error: (err as Error).message,
    }));
    this.o.log.error({ dropped: refused.length, rows }, `PostgreSQL refused ${refused.length} ${this.o.what}; they are not recorded`);
  }
}

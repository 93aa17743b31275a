// What an error from PostgreSQL, Redis or the network means for the caller: the dependency is
// out of reach (retry later) or it refused the value it was given (the caller's bad input).

// Node's socket errors: nothing answered, or the connection went away.
const networkCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE"]);
// SQLSTATEs of a server that cannot serve now: connection exceptions (class 08), shutting down or
// starting up (57P01-57P03), too many connections (53300).
const unavailableSqlStates = /^(08...|57P0[123]|53300)$/;
// pg and pg-pool report a lost or timed-out connection by message only.
const lostConnection =
  /^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed|Cannot use a pool after calling end)/;
// ioredis, once its retries per request are spent or while it reconnects.
const redisNames = new Set(["MaxRetriesPerRequestError"]);
const redisMessages = /^(Connection is closed|Stream isn't writeable)/;

/** Whether `err` says a dependency (PostgreSQL, Redis, a peer over the network) is out of reach, as opposed to a bug. */
export function isDependencyOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (networkCodes.has(code) || unavailableSqlStates.test(code))) return true;
  if (lostConnection.test(err.message) || redisNames.has(err.name) || redisMessages.test(err.message)) return true;
  // Connecting to a name with several addresses fails with one error per address.
  return err instanceof AggregateError && err.errors.some(isDependencyOutage);
}

/**
 * PostgreSQL's reason when it refused a value (SQLSTATE class 22, data exception: a NUL in text,
 * a number out of range, an impossible date, text that is not a uuid…), else undefined.
 */
export function refusedValueReason(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== "string" || !/^22[0-9A-Z]{3}$/.test(code) || !(err instanceof Error)) return undefined;
  return err.message;
}

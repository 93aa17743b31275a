import type { Logger } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";
import type { InstanceStore } from "./instances.js";
import type { ConfigMetrics } from "./metrics.js";
import type { PushHub } from "./push.js";

/**
 * Keeps instance states true: heartbeats heard on this replica's sockets are written in one batch
 * per flush (a heartbeat costs no query of its own), sockets silent past the timeout are closed,
 * and one replica at a time marks offline the instances nobody has heard from (their replica died
 * with their sockets, or they registered and never connected). A replica that cannot reach
 * PostgreSQL (its database and its bus) for longer than the heartbeat timeout closes its sockets
 * (1013): their instances miss every change made elsewhere meanwhile, and other replicas already
 * show them offline, so they reconnect to a replica that can serve them.
 */
export function startLiveness(d: {
  pool: Pool;
  instances: InstanceStore;
  hub: PushHub;
  metrics: ConfigMetrics;
  log: Logger;
  flushMs: number;
  timeoutMs: number;
}): { flush(): Promise<void>; close(): Promise<void> } {
  let lastFlush = 0;
  /** When PostgreSQL last answered a flush. */
  let reachedAt = Date.now();
  let flushing: Promise<void> | undefined;

  const flush = () => {
    flushing ??= (async () => {
      const since = lastFlush;
      const now = Date.now();
      const beats = [...d.hub.all()]
        .filter((s) => s.heardAt > since && !s.catchingUp)
        .map((s) => ({ id: s.identity.instanceId, connectionId: s.connectionId, ackedVersion: s.ackedVersion }));
      try {
        // With sockets open and nothing to write, a trivial query still proves PostgreSQL answers.
        if (beats.length) await d.instances.heartbeats(beats);
        else if (d.hub.all().next().done === false) await d.pool.query("SELECT 1");
        lastFlush = now;
        reachedAt = now;
      } catch (err) {
        d.log.warn({ err: (err as Error).message, heartbeats: beats.length }, "heartbeats not written; retrying at the next flush");
      }
    })().finally(() => {
      flushing = undefined;
    });
    return flushing;
  };

  const checkSilence = () => {
    const deadline = Date.now() - d.timeoutMs;
    // Failing flushes and one that hangs (a partition) alike leave reachedAt behind.
    const cutOff = reachedAt < deadline - d.flushMs;
    if (cutOff && d.hub.all().next().done === false)
      d.log.warn({ silentMs: Date.now() - reachedAt }, "PostgreSQL out of reach: closing instance sockets so they reconnect elsewhere");
    for (const s of d.hub.all()) {
      if (cutOff) s.ws.close(1013, `config-center lost its database for over ${d.timeoutMs} ms: reconnect`);
      else if (s.heardAt < deadline) s.ws.close(4000, `no heartbeat for ${d.timeoutMs} ms`);
    }
  };

  const sweep = async () => {
    try {
      const marked = await withTransaction(d.pool, async (tx) =>
        (await tryAdvisoryXactLock(tx, "config-center.instance-sweep")) ? d.instances.sweep(d.timeoutMs) : 0,
      );
      if (marked) {
        d.metrics.offlineMarked.inc({ why: "heartbeat-timeout" }, marked);
        d.log.info({ marked }, "silent instances marked offline");
      }
    } catch (err) {
      d.log.warn({ err: (err as Error).message }, "instance sweep failed");
    }
  };

  const flushTimer = setInterval(() => void flush(), d.flushMs);
  const silenceTimer = setInterval(checkSilence, Math.min(1_000, d.timeoutMs / 3));
  const sweepTimer = setInterval(() => void sweep(), Math.max(d.timeoutMs / 2, 250));
  for (const t of [flushTimer, silenceTimer, sweepTimer]) t.unref();
  return {
    flush,
    async close() {
      clearInterval(flushTimer);
      clearInterval(silenceTimer);
      clearInterval(sweepTimer);
      await flush();
    },
  };
}

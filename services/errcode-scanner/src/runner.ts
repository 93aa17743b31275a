import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { ScanCompletedSchema, toEventData, topics } from "@opsplane/contracts";
import { isDependencyOutage, type Logger } from "@opsplane/platform";
import { type Pool, type Queryable, withTransaction } from "@opsplane/store";
import { ArtifactSourceError, allowedUrl, download } from "./artifact-source.js";
import type { ScannerMetrics } from "./metrics.js";
import type { ScanBounds } from "./scan/isolated-extract.js";
import { ScanBoundsError } from "./scan/isolated-extract.js";
import { ArtifactError } from "./scan/limits.js";
import { ConfigError, type RulesFile, resolveConfig } from "./scan/rules.js";
import { type ScanReport, scan } from "./scan/scan.js";
import { type ScanSource, type ScanStore, TableWriter } from "./store.js";

/** One scan to run: an uploaded file already on disk, or a URL to download first. */
export interface ScanJob {
  scanId: string;
  source: ScanSource;
  artifactName: string;
  /** Uploaded artifact; deleted when the scan ends. */
  file?: string;
  url?: string;
  sha256?: string;
  bases: string[];
  codePattern?: string;
  system?: string;
  /** Why the scan is refused before it starts (e.g. an event without a sha256). */
  refusal?: string;
}

export interface RunnerDeps {
  pool: Pool;
  bus: Bus;
  store: ScanStore;
  metrics: ScannerMetrics;
  log: Logger;
  workDir: string;
  rules: RulesFile;
  defaultBases: string[];
  urlPrefixes: string[];
  maxArtifactBytes: number;
  downloadTimeoutMs: number;
  concurrency: number;
  /** How long this replica's hold on a scan lasts without renewal (the store's lease length). */
  leaseMs: number;
  /** Heap and time one scan may use (it runs in a worker thread held to them). */
  bounds: ScanBounds;
  /** Starts of a scan before one whose replica keeps dying while running it is failed instead of run again. */
  maxAttempts: number;
  /**
   * How long `close` waits for running scans to finish; past that they are stopped and handed back, their
   * start not counted: a replica stopped on purpose (a rolling update) says nothing against the artifact.
   */
  drainMs: number;
}

/** Waits between runs of a scan a dependency outage cut short, doubling (as the platform's batch writers do). */
const firstOutageRetryMs = 250;
const maxOutageRetryMs = 5_000;

/** Another replica took the scan over: this replica's lease on it had expired. */
class LeaseLost extends Error {}

/**
 * Runs queued scans in the background, a few at a time, and records their outcome with its event.
 * Every scan it queued or runs is leased to it in the database and the lease renewed while it
 * holds the scan, so other replicas leave it alone; scans whose replica died are taken over.
 */
export function createScanRunner(d: RunnerDeps) {
  const queue: ScanJob[] = [];
  const running = new Map<string, Promise<void>>();
  /** Running scans another replica took over; they stop at their next class. */
  const lost = new Set<string>();
  /** Aborted when `close` stops the running scans: a download ends, a scan stops at its next class. */
  const stopping = new AbortController();
  const loops: Loop[] = [];
  let closed = false;

  const pump = () => {
    while (!closed && running.size < d.concurrency && queue.length) {
      const job = queue.shift() as ScanJob;
      const p = runToOutcome(job)
        .catch((err) =>
          d.log.error({ err, scanId: job.scanId }, "scan outcome not recorded; the scan is taken over once its lease expires"),
        )
        .finally(() => {
          running.delete(job.scanId);
          lost.delete(job.scanId);
          pump();
        });
      running.set(job.scanId, p);
    }
  };

  const held = () => [...queue.map((j) => j.scanId), ...running.keys()];

  /** Renews the leases of the scans held here, and drops those another replica has taken over meanwhile. */
  async function renewLeases(): Promise<void> {
    const before = held();
    if (!before.length) return;
    const renewed = await d.store.renewLeases(before);
    const gone = new Set(before.filter((id) => !renewed.has(id)));
    // Scans that finished during the renewal are not held any more: only those still held were taken over.
    for (const id of held().filter((x) => gone.has(x))) {
      d.log.warn({ scanId: id }, "this replica's lease on the scan expired and another replica took it over");
      const queued = queue.findIndex((j) => j.scanId === id);
      if (queued < 0)
        lost.add(id); // running: it stops at its next class
      else await discard(queue.splice(queued, 1));
    }
  }

  /** Removes the uploads of jobs this replica will not run. */
  async function discard(jobs: ScanJob[]): Promise<void> {
    for (const job of jobs) if (job.file) await rm(path.dirname(job.file), { recursive: true, force: true });
  }

  /**
   * Takes over as many scans as there is room for whose replica stopped renewing their lease:
   * downloads run again, uploads (left on that replica's disk) fail, and so does a scan already
   * started `maxAttempts` times (an artifact that kills its replica must not do so at every start).
   */
  async function takeOverExpired(): Promise<void> {
    const room = d.concurrency - running.size - queue.length;
    if (closed || room <= 0) return;
    for (const s of await d.store.claimExpired(room, held())) {
      d.log.info({ scanId: s.id, previousOwner: s.previous_owner }, "took over a scan whose replica stopped renewing its lease");
      d.metrics.takenOver.inc();
      const job: ScanJob = {
        scanId: s.id,
        source: s.source,
        artifactName: s.artifact_name,
        url: s.artifact_url ?? undefined,
        sha256: s.sha256 ?? undefined,
        bases: s.bases,
        codePattern: s.code_pattern ?? undefined,
        system: s.system ?? undefined,
      };
      if (s.attempts >= d.maxAttempts)
        await failUnrun(
          job,
          `the scan was started ${s.attempts} times and the replica running it stopped each time before it finished; not run again`,
        );
      else if (s.artifact_url) queue.push(job);
      else await failUnrun(job, "the replica holding this upload stopped before scanning it; submit it again");
    }
    pump();
  }

  /** A scan stopped by `close`: another replica runs it from the start (an upload, left on this disk, fails there). */
  async function handBack(job: ScanJob): Promise<void> {
    try {
      await d.store.requeue(job.scanId, { release: true });
      d.log.info({ scanId: job.scanId }, "shutting down: scan stopped and handed back to another replica, this start not counted");
    } catch (err) {
      d.log.warn(
        { scanId: job.scanId, err: (err as Error).message },
        "could not hand the scan back; it is taken over once its lease expires",
      );
    }
  }

  /** Records a taken-over scan as failed without running it. */
  async function failUnrun(job: ScanJob, reason: string): Promise<void> {
    d.log.warn({ scanId: job.scanId, reason }, "scan failed");
    const recorded = await withTransaction(d.pool, async (tx) => {
      if (!(await d.store.fail(tx, job.scanId, reason))) return false;
      await publish(tx, job, job.sha256, "failed", undefined, reason);
      return true;
    });
    if (recorded) d.metrics.scans.inc({ status: "failed" });
  }

  /**
   * Runs a scan until it has an outcome, then removes its upload. A run a dependency outage cut short
   * (PostgreSQL gone mid-scan) says nothing about the artifact: the scan keeps its slot, its lease and
   * its upload, and runs again from the start, that start uncounted, once the database answers. Before,
   * it was failed as an internal error, or its upload was removed and the scan failed at takeover.
   */
  async function runToOutcome(job: ScanJob): Promise<void> {
    let waitMs = 0;
    try {
      for (;;) {
        try {
          if (waitMs) {
            await delay(waitMs, undefined, { signal: stopping.signal }).catch(() => {});
            if (stopping.signal.aborted) return await handBack(job);
            if (!(await d.store.requeue(job.scanId, { release: false })))
              return d.log.warn(
                { scanId: job.scanId },
                "scan not run again: no longer this replica's (taken over during the outage, or its outcome was recorded after all)",
              );
          }
          return await run(job);
        } catch (err) {
          if (!isDependencyOutage(err)) throw err;
          waitMs = Math.min(Math.max(waitMs * 2, firstOutageRetryMs), maxOutageRetryMs);
          d.log.warn(
            { scanId: job.scanId, err: (err as Error).message, retryInMs: waitMs },
            "scan cut short by a dependency outage; it runs again from the start once the database answers",
          );
        }
      }
    } finally {
      if (job.file) await rm(path.dirname(job.file), { recursive: true, force: true });
    }
  }

  async function run(job: ScanJob): Promise<void> {
    const started = performance.now();
    const dir = await mkdtemp(path.join(d.workDir, "scan-"));
    let sha256 = job.sha256;
    try {
      if ((await d.store.startAttempt(job.scanId)) === undefined) throw new LeaseLost();
      if (job.refusal) throw new ArtifactSourceError(job.refusal);
      let file = job.file;
      if (job.url) {
        const url = allowedUrl(job.url, d.urlPrefixes);
        if (!url) throw new ArtifactSourceError(`${job.url} is not under an allowed artifact repository`);
        file = path.join(dir, path.basename(job.artifactName) || "artifact.jar");
        sha256 = await download(url, file, {
          maxBytes: d.maxArtifactBytes,
          timeoutMs: d.downloadTimeoutMs,
          expected: job.sha256,
          signal: stopping.signal,
        });
      }
      if (!file) throw new ArtifactSourceError("the scan has no artifact");
      if (!(await d.store.markRunning(job.scanId, sha256))) throw new LeaseLost();
      const config = resolveConfig(
        { ...d.rules, system: job.system || d.rules.system },
        {
          bases: job.bases.length ? job.bases : d.defaultBases,
          codePattern: job.codePattern || undefined,
        },
      );
      if (!config.bases.length) throw new ConfigError("no base exception class: name one in the request or set ERRCODE_BASES");
      const registry = await d.store.registry("", 10_000_000);
      const tables = new TableWriter(d.pool, job.scanId);
      const report = await scan(
        file,
        job.artifactName,
        config,
        registry,
        {
          onContainer: (c) => tables.container(c),
          onClass: (c) => {
            if (lost.has(job.scanId)) throw new LeaseLost();
            stopping.signal.throwIfAborted();
            return tables.add(c);
          },
        },
        d.bounds,
      );
      await tables.flush();
      await withTransaction(d.pool, async (tx) => {
        if (!(await d.store.succeed(tx, job.scanId, report))) throw new LeaseLost();
        await publish(tx, job, sha256, "succeeded", report);
      });
      d.metrics.scans.inc({ status: "succeeded" });
      d.metrics.classes.inc(report.stats.classes);
      d.metrics.classesPerSecond.set(report.stats.classesPerSecond);
      for (const [rule, n] of Object.entries(report.stats.violationsByRule)) d.metrics.violations.inc({ rule }, n);
      d.log.info(
        { scanId: job.scanId, artifact: job.artifactName, codes: report.stats.distinctCodes, violations: report.stats.violations },
        "scan succeeded",
      );
    } catch (err) {
      if (err instanceof LeaseLost) {
        d.log.warn({ scanId: job.scanId }, "scan abandoned: another replica took it over");
        return;
      }
      // Whatever the stop made of the run (an aborted download, a scan cut at a class), it is not the artifact's outcome.
      if (stopping.signal.aborted) return await handBack(job);
      if (isDependencyOutage(err)) throw err;
      const known =
        err instanceof ArtifactError || err instanceof ArtifactSourceError || err instanceof ConfigError || err instanceof ScanBoundsError;
      const message = known ? (err as Error).message : `internal error: ${(err as Error).message}`;
      if (!known) d.log.error({ err, scanId: job.scanId }, "scan failed");
      else d.log.warn({ scanId: job.scanId, reason: message }, "scan failed");
      const recorded = await withTransaction(d.pool, async (tx) => {
        if (!(await d.store.fail(tx, job.scanId, message))) return false;
        await publish(tx, job, sha256, "failed", undefined, message);
        return true;
      });
      if (recorded) d.metrics.scans.inc({ status: "failed" });
    } finally {
      d.metrics.duration.observe((performance.now() - started) / 1000);
      await rm(dir, { recursive: true, force: true });
    }
  }

  async function publish(tx: Queryable, job: ScanJob, sha256: string | undefined, status: string, report?: ScanReport, error?: string) {
    await d.bus.publish(
      {
        topic: topics.errcodeScanCompleted.name,
        type: topics.errcodeScanCompleted.type,
        key: job.scanId,
        data: toEventData(
          topics.errcodeScanCompleted,
          create(ScanCompletedSchema, {
            scanId: job.scanId,
            artifactName: job.artifactName,
            sha256: sha256 ?? "",
            status,
            errorCodes: report?.stats.errorCodes ?? 0,
            violations: report?.stats.violations ?? 0,
            violationsByRule: report?.stats.violationsByRule ?? {},
            error: error ?? "",
            finishedAt: new Date().toISOString(),
          }),
        ),
      },
      { tx },
    );
  }

  return {
    /** A private folder for an upload, removed when its scan ends. */
    async uploadDir(scanId: string): Promise<string> {
      const dir = path.join(d.workDir, `upload-${scanId}`);
      await mkdir(dir, { recursive: true });
      return dir;
    },
    enqueue(job: ScanJob): void {
      queue.push(job);
      pump();
    },
    /**
     * Takes over the scans whose replica is gone, then keeps renewing this replica's leases
     * (every third of the lease) and looking for expired ones (every half lease).
     */
    async start(): Promise<void> {
      await takeOverExpired();
      loops.push(
        every(d.leaseMs / 3, renewLeases, (err) => d.log.warn({ err: (err as Error).message }, "could not renew scan leases")),
        every(d.leaseMs / 2, takeOverExpired, (err) =>
          d.log.warn({ err: (err as Error).message }, "could not look for scans to take over"),
        ),
      );
    },
    /**
     * Stops taking jobs, hands the queued ones back for other replicas, and waits up to `drainMs` for the
     * running ones (renewing their leases meanwhile); those still running then are stopped and handed back.
     */
    async close(): Promise<void> {
      closed = true;
      const unstarted = queue.splice(0);
      if (unstarted.length)
        await d.store
          .releaseLeases(unstarted.map((j) => j.scanId))
          .catch((err) =>
            d.log.warn({ err: (err as Error).message }, "could not hand queued scans back; they are taken over once their lease expires"),
          );
      await discard(unstarted);
      const drained = Promise.allSettled([...running.values()]);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([drained, new Promise((resolve) => (timer = setTimeout(resolve, d.drainMs)))]);
      clearTimeout(timer);
      if (running.size) {
        d.log.warn({ scans: [...running.keys()], drainMs: d.drainMs }, "shutting down: stopping the scans still running");
        stopping.abort();
      }
      await drained;
      for (const loop of loops) loop.stop();
    },
  };
}

interface Loop {
  stop(): void;
}

/** Runs `fn` every `ms` after the previous run ended (runs never overlap); failures go to `onError`. */
function every(ms: number, fn: () => Promise<void>, onError: (err: unknown) => void): Loop {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => void fn().catch(onError).finally(schedule), ms);
    timer.unref();
  };
  schedule();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

export type ScanRunner = ReturnType<typeof createScanRunner>;

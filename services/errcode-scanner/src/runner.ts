import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { ScanCompletedSchema, toEventData, topics } from "@opsplane/contracts";
import type { Logger } from "@opsplane/platform";
import { type Pool, type Queryable, withTransaction } from "@opsplane/store";
import { ArtifactSourceError, allowedUrl, download } from "./artifact-source.js";
import type { ScannerMetrics } from "./metrics.js";
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
}

/** Runs queued scans in the background, a few at a time, and records their outcome with its event. */
export function createScanRunner(d: RunnerDeps) {
  const queue: ScanJob[] = [];
  const running = new Set<Promise<void>>();
  let closed = false;

  const pump = () => {
    while (!closed && running.size < d.concurrency && queue.length) {
      const job = queue.shift() as ScanJob;
      const p = run(job).finally(() => {
        running.delete(p);
        pump();
      });
      running.add(p);
    }
  };

  async function run(job: ScanJob): Promise<void> {
    const started = performance.now();
    const dir = await mkdtemp(path.join(d.workDir, "scan-"));
    let sha256 = job.sha256;
    try {
      if (job.refusal) throw new ArtifactSourceError(job.refusal);
      let file = job.file;
      if (job.url) {
        const url = allowedUrl(job.url, d.urlPrefixes);
        if (!url) throw new ArtifactSourceError(`${job.url} is not under an allowed artifact repository`);
        file = path.join(dir, path.basename(job.artifactName) || "artifact.jar");
        sha256 = await download(url, file, { maxBytes: d.maxArtifactBytes, timeoutMs: d.downloadTimeoutMs, expected: job.sha256 });
      }
      if (!file) throw new ArtifactSourceError("the scan has no artifact");
      await d.store.markRunning(job.scanId, sha256);
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
      const report = await scan(file, job.artifactName, config, registry, {
        onContainer: (c) => tables.container(c),
        onClass: (c) => tables.add(c),
      });
      await tables.flush();
      await withTransaction(d.pool, async (tx) => {
        await d.store.succeed(tx, job.scanId, report);
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
      const known = err instanceof ArtifactError || err instanceof ArtifactSourceError || err instanceof ConfigError;
      const message = known ? (err as Error).message : `internal error: ${(err as Error).message}`;
      if (!known) d.log.error({ err, scanId: job.scanId }, "scan failed");
      else d.log.warn({ scanId: job.scanId, reason: message }, "scan failed");
      await withTransaction(d.pool, async (tx) => {
        await d.store.fail(tx, job.scanId, message);
        await publish(tx, job, sha256, "failed", undefined, message);
      });
      d.metrics.scans.inc({ status: "failed" });
    } finally {
      d.metrics.duration.observe((performance.now() - started) / 1000);
      await rm(dir, { recursive: true, force: true });
      if (job.file) await rm(path.dirname(job.file), { recursive: true, force: true });
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
    /** Scans a previous process left unfinished: downloads run again, lost uploads fail. */
    async recover(): Promise<void> {
      for (const s of await d.store.unfinished()) {
        if (s.artifact_url)
          queue.push({
            scanId: s.id,
            source: s.source,
            artifactName: s.artifact_name,
            url: s.artifact_url,
            sha256: s.sha256 ?? undefined,
            bases: s.bases,
            codePattern: s.code_pattern ?? undefined,
            system: s.system ?? undefined,
          });
        else
          await withTransaction(d.pool, async (tx) => {
            await d.store.fail(tx, s.id, "the service restarted before this upload was scanned; submit it again");
            await publish(
              tx,
              { scanId: s.id, source: s.source, artifactName: s.artifact_name, bases: s.bases },
              s.sha256 ?? undefined,
              "failed",
              undefined,
              "service restarted",
            );
          });
      }
      pump();
    },
    /** Stops taking jobs and waits for the running ones. */
    async close(): Promise<void> {
      closed = true;
      await Promise.allSettled([...running]);
    },
  };
}

export type ScanRunner = ReturnType<typeof createScanRunner>;

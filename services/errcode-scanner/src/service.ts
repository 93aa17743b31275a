import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { packageVersion, type ServiceDefinition } from "@opsplane/platform";
import { scannerEnv } from "./config.js";
import { subscribeArtifacts } from "./consumer.js";
import { createScannerMetrics } from "./metrics.js";
import { errcodeRpc } from "./rpc.js";
import { createScanRunner } from "./runner.js";
import { loadRulesFile, type RulesFile } from "./scan/rules-file.js";
import { createScanStore } from "./store.js";

/** Finds and validates the error codes inside deployed Java artifacts. */
export const definition: ServiceDefinition<typeof scannerEnv> = {
  name: "errcode-scanner",
  version: packageVersion(__dirname),
  defaultPort: 8082,
  env: scannerEnv,
  migrationsDir: path.join(__dirname, "..", "migrations"),
  async setup(ctx) {
    const { config } = ctx;
    const rules: RulesFile = config.ERRCODE_RULES_FILE ? await loadRulesFile(config.ERRCODE_RULES_FILE) : {};
    // Its own folder (two replicas in one process, a restarted container), removed once the runner has stopped.
    const workDir = await mkdtemp(path.join(tmpdir(), "errcode-scanner-"));
    ctx.onClose(() => rm(workDir, { recursive: true, force: true }));
    // The replica's name in the scans it holds: the pod (host) name, then what tells restarts apart.
    const owner = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
    const store = createScanStore(ctx.pool, { owner, ms: config.ERRCODE_SCAN_LEASE_MS });
    const runner = createScanRunner({
      pool: ctx.pool,
      bus: ctx.bus,
      store,
      metrics: createScannerMetrics(ctx.metrics),
      log: ctx.log,
      workDir,
      rules,
      defaultBases: config.ERRCODE_BASES,
      urlPrefixes: config.ERRCODE_ARTIFACT_URL_PREFIXES,
      maxArtifactBytes: config.ERRCODE_MAX_ARTIFACT_BYTES,
      downloadTimeoutMs: config.ERRCODE_DOWNLOAD_TIMEOUT_MS,
      concurrency: config.ERRCODE_SCAN_CONCURRENCY,
      leaseMs: config.ERRCODE_SCAN_LEASE_MS,
      bounds: { maxHeapMb: config.ERRCODE_SCAN_MAX_HEAP_MB, timeLimitMs: config.ERRCODE_SCAN_TIME_LIMIT_MS },
      maxAttempts: config.ERRCODE_SCAN_MAX_ATTEMPTS,
      // Close hooks run after the HTTP server's close (up to half the bound): a quarter leaves the rest for handing back.
      drainMs: config.SHUTDOWN_TIMEOUT_MS / 4,
    });
    ctx.onClose(() => runner.close());
    await runner.start();
    const subscription = await subscribeArtifacts({
      bus: ctx.bus,
      store,
      runner,
      urlPrefixes: config.ERRCODE_ARTIFACT_URL_PREFIXES,
      log: ctx.log,
    });
    ctx.onClose(() => subscription.close());
    return {
      rpc: [
        errcodeRpc({
          store,
          runner,
          urlPrefixes: config.ERRCODE_ARTIFACT_URL_PREFIXES,
          maxArtifactBytes: config.ERRCODE_MAX_ARTIFACT_BYTES,
          audit: ctx.audit,
        }),
      ],
    };
  },
};

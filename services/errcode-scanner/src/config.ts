import { z } from "zod";

const list = z
  .string()
  .default("")
  .transform((s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  );

/** errcode-scanner's own environment variables (beside the platform's). */
export const scannerEnv = {
  /** Base exception classes used when a scan names none, comma-separated FQNs. */
  ERRCODE_BASES: list,
  /** Rules file (JSON, same format as the CLI's --rules); unset uses the defaults. */
  ERRCODE_RULES_FILE: z.string().optional(),
  /** URL prefixes artifacts may be downloaded from, comma-separated; empty refuses every URL. */
  ERRCODE_ARTIFACT_URL_PREFIXES: list,
  /** Largest artifact downloaded or uploaded. */
  ERRCODE_MAX_ARTIFACT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(512 * 1024 * 1024),
  /** How long one download may take. */
  ERRCODE_DOWNLOAD_TIMEOUT_MS: z.coerce.number().int().min(1000).default(300_000),
  /** Scans run at once (each uses one core while it parses). */
  ERRCODE_SCAN_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(1),
  /**
   * How long a replica's hold on a queued or running scan lasts without renewal; it renews every
   * third of it. Another replica takes the scan over only after it expired (within 1.5 × this).
   */
  ERRCODE_SCAN_LEASE_MS: z.coerce.number().int().min(1000).default(30_000),
  /** Heap of one scan's worker thread, in MiB: past it the scan fails, the service stays up. */
  ERRCODE_SCAN_MAX_HEAP_MB: z.coerce.number().int().min(32).default(2048),
  /** Time one scan (read and extract, after the download) may take before it fails. */
  ERRCODE_SCAN_TIME_LIMIT_MS: z.coerce.number().int().min(1000).default(1_800_000),
  /** Times a scan is started before it is failed when its replica dies running it each time. */
  ERRCODE_SCAN_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(3),
};

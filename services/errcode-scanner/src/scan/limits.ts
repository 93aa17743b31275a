/** Bounds on what one scan will read, so a hostile artifact cannot exhaust memory or disk. */
export interface ScanLimits {
  /** Entries across the artifact and every nested archive. */
  maxEntries: number;
  /** Bytes inflated across the whole scan (only entries actually read count). */
  maxTotalInflatedBytes: number;
  /** Largest single class file. */
  maxClassBytes: number;
  /** Largest nested jar/war held in memory while it is read. */
  maxNestedArchiveBytes: number;
  /** Archives inside archives: 0 reads only the artifact itself. */
  maxNestingDepth: number;
  /** Inflated/compressed ratio refused for entries larger than `ratioMinBytes`. */
  maxCompressionRatio: number;
  ratioMinBytes: number;
}

export const defaultLimits: ScanLimits = {
  maxEntries: 500_000,
  maxTotalInflatedBytes: 4 * 1024 ** 3,
  maxClassBytes: 16 * 1024 ** 2,
  maxNestedArchiveBytes: 256 * 1024 ** 2,
  maxNestingDepth: 3,
  maxCompressionRatio: 200,
  ratioMinBytes: 64 * 1024,
};

/** The artifact cannot be scanned (not a zip, truncated, a bomb, an unsafe entry name): exit code 2. */
export class ArtifactError extends Error {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(entry ? `${entry}: ${message}` : message);
    this.name = "ArtifactError";
  }
}

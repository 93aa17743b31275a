import { Counter, type Registry } from "prom-client";

/** One label set's count since the last scrape: incremented as a plain number. */
export interface Tally {
  count: number;
}

/**
 * A prom-client counter for code that counts on every request: each label set gets a tally once
 * (`tally`), counting is `tally.count++`, and the tallies are handed to the counter when it is read.
 * A labelled child of prom-client checks and hashes its labels again at every inc (about a
 * microsecond); callers keep their tallies where they find them without building a key.
 */
export class TalliedCounter<L extends string> {
  private readonly tallies: Array<{ labels: Record<L, string>; tally: Tally }> = [];

  /** As prom-client's own counter is configured; `registers` are the registries it is shown in. */
  constructor(config: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
    const tallies = this.tallies;
    new Counter({
      ...config,
      collect() {
        for (const t of tallies) {
          if (!t.tally.count) continue;
          this.inc(t.labels as Partial<Record<L, string>>, t.tally.count);
          t.tally.count = 0;
        }
      },
    });
  }

  /** A new label set's tally; look it up once per label set, not per count. */
  tally(labels: Record<L, string>): Tally {
    const tally = { count: 0 };
    this.tallies.push({ labels: { ...labels }, tally });
    return tally;
  }
}

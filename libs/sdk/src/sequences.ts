import type { ConfigClient } from "./config-client.js";

/**
 * A distributed sequence kept by config-center (seed module 2024): its pattern, block size, reset
 * rule and maximum are config-center's. Numbers come in blocks, already formatted, one request per
 * block however many callers wait; the block's values are handed out in order. Numbers of a block
 * not used before the process ends are skipped (as in every block-cached sequence), and a block
 * drawn just before a daily or monthly reset carries the period it was drawn in.
 */
export class DistributedSequence {
  private block: string[] = [];
  private at = 0;
  private drawing: Promise<void> | undefined;

  constructor(
    private readonly client: ConfigClient,
    readonly name: string,
  ) {}

  /** The next value, e.g. `LN20250101000042`. Rejects when config-center refuses (403, exhausted 409) or cannot answer. */
  async next(): Promise<string> {
    while (this.at >= this.block.length) {
      this.drawing ??= this.client
        .nextSequenceBlock(this.name)
        .then((b) => {
          this.block = b.values;
          this.at = 0;
        })
        .finally(() => {
          this.drawing = undefined;
        });
      await this.drawing;
    }
    return this.block[this.at++]!;
  }
}

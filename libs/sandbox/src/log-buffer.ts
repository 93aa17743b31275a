import type { ScriptLimits } from "./limits.js";

/** Collects console.* lines for one call, capped so a chatty script cannot grow the reply without bound. */
export class LogBuffer {
  private lines: string[] = [];
  private dropped = 0;

  constructor(private readonly limits: Pick<ScriptLimits, "maxLogLines" | "maxLogLineLength">) {}

  add(line: string): void {
    if (this.lines.length >= this.limits.maxLogLines) {
      this.dropped++;
      return;
    }
    const max = this.limits.maxLogLineLength;
    this.lines.push(line.length > max ? `${line.slice(0, max)}… (${line.length - max} more characters)` : line);
  }

  /** Hands over the lines of the call that just ended and starts empty for the next. */
  take(): string[] {
    const lines = this.dropped > 0 ? [...this.lines, `… ${this.dropped} more lines not kept`] : this.lines;
    this.lines = [];
    this.dropped = 0;
    return lines;
  }
}

import { AppError, badRequest, unavailable } from "@opsplane/platform";
import { createSandbox, type Sandbox, SandboxError, SandboxUnavailableError } from "@opsplane/sandbox";

/** A function defined ahead of the script, on its own line, so the sandbox has an entry to find whatever the script defines. */
const entry = "configCenterLoadCheck";
const preamble = `function ${entry}() {}\n`;

/** Checks one replica runs at once: each may take the sandbox's full second, on one worker. */
export const scriptChecksAtOnce = 2;
/** How long a write waits for a check slot before it is answered 429. */
export const scriptCheckWaitMs = 2_000;

/**
 * Loads sandbox scripts at write time, as the SDK will (libs/sandbox: QuickJS, time and memory
 * limits, on a worker thread that starts with the first script): one that does not parse, or whose
 * top-level code fails or runs too long, is refused (400) with the error and its line and column,
 * rather than stored and pushed to every instance. Which function the SDK calls is its own
 * contract; the script is checked as a whole. Callers check before they take a database
 * connection, and at most `scriptChecksAtOnce` run at a time: a flood of slow scripts waits here
 * (then gets 429), never holding connections other requests need.
 */
export class ScriptCheck {
  private sandbox: Promise<Sandbox> | undefined;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  async check(source: string, what: string): Promise<void> {
    await this.slot();
    try {
      this.sandbox ??= createSandbox({ workers: 1 });
      (await (await this.sandbox).compile(preamble + source, { entry, timeLimitMs: 1_000 })).dispose();
    } catch (err) {
      if (!(err instanceof SandboxError)) throw err;
      // The sandbox could not run the check (closing, no worker): the script was not judged.
      if (err instanceof SandboxUnavailableError) throw unavailable(`${what} could not be checked: ${err.message}`, 5);
      // Positions count from the script's first line, not the preamble's.
      const line = err.line === undefined ? undefined : err.line - 1;
      const at = line === undefined ? "" : ` at line ${line}, column ${err.column}`;
      const reason = err.message.replace(/ \(line \d+, column \d+\)$/, "");
      throw badRequest(`${what} does not load${at}: ${reason}`, { line, column: err.column });
    } finally {
      this.release();
    }
  }

  async close(): Promise<void> {
    await (await this.sandbox)?.close();
  }

  private async slot(): Promise<void> {
    if (this.running < scriptChecksAtOnce) {
      this.running++;
      return;
    }
    const granted = await new Promise<boolean>((resolve) => {
      const grant = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        resolve(false);
      }, scriptCheckWaitMs);
      this.waiting.push(grant);
    });
    if (!granted)
      throw new AppError(
        429,
        "too_many_requests",
        `too many baffle scripts being checked on this replica (${scriptChecksAtOnce} at a time); retry in 1 s`,
        undefined,
        1,
      );
  }

  /** Hands the slot to the next waiter, or frees it. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

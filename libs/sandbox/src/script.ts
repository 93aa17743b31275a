import { toSandboxError } from "./errors.js";
import type { ScriptLimits } from "./limits.js";
import type { PlacedScript, WorkerSlot } from "./worker-slot.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface SandboxResult {
  /** What the entry function returned, through JSON (a returned `undefined` reads as null). */
  value: JsonValue;
  /** Lines the script wrote with console.* during this call. */
  logs: string[];
}

/** A compiled script: call it as often as needed; every call gets the script's limits afresh. */
export class Script {
  private disposed = false;

  /** @internal Created by Sandbox.compile. */
  constructor(
    private readonly placed: PlacedScript,
    private readonly slot: WorkerSlot,
  ) {}

  get limits(): Readonly<ScriptLimits> {
    return this.placed.limits;
  }

  /**
   * Runs the entry function with `input` (passed as JSON). Rejects with a SandboxError subclass naming
   * what went wrong; after a limit error the script is reloaded, so the next call works as before.
   * With `waitLimitMs`, a call its worker could not start within it (busy with the calls queued before
   * it) is not run and rejects with SandboxUnavailableError.
   */
  async call(input: JsonValue, options: { waitLimitMs?: number } = {}): Promise<SandboxResult> {
    if (this.disposed) throw new Error("script is disposed");
    const reply = await this.slot.request("call", this.placed, JSON.stringify(input) ?? "null", options.waitLimitMs);
    if (!reply.ok) throw toSandboxError(reply.failure);
    return { value: JSON.parse(reply.output) as JsonValue, logs: reply.logs };
  }

  /** Frees the script's runtime in its worker; calls made before still complete. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.slot.dispose(this.placed);
  }
}

import { availableParallelism } from "node:os";
import { toSandboxError } from "./errors.js";
import { resolveLimits, type ScriptOptions } from "./limits.js";
import { Script } from "./script.js";
import { WorkerSlot } from "./worker-slot.js";

export interface SandboxOptions {
  /** Worker threads running scripts; each script is pinned to one. Default: 2 (1 on a single core). */
  workers?: number;
  /** Extra time past a script's own budget before its worker is presumed stuck and replaced. Default 5000 ms. */
  watchdogGraceMs?: number;
  /**
   * Native stack of each worker thread. QuickJS bounds recursion by its own stack limit, but some
   * paths (JSON, toJSON, the parser) use far more native stack per level than QuickJS counts; the
   * default headroom keeps its check first for every stack limit allowed. With less, such a script
   * kills its worker, which is replaced. Default 64 MB (address space; only what is used is resident).
   */
  workerStackMb?: number;
}

/** Compiles scripts onto a pool of worker threads, so scripts never run on the caller's event loop. */
export class Sandbox {
  private nextId = 1;

  /** @internal Created by createSandbox. */
  constructor(private readonly slots: readonly WorkerSlot[]) {}

  /**
   * Loads `source` (its top-level code runs once, under the same limits as a call) and checks it
   * defines the entry function. Rejects with SandboxCompileError (with line and column when the
   * source does not parse) or RangeError for invalid options.
   */
  async compile(source: string, options?: ScriptOptions): Promise<Script> {
    const limits = resolveLimits(options);
    const id = this.nextId++;
    const slot = this.slots[id % this.slots.length]!;
    const placed = { id, source, limits, loadedIn: undefined };
    const reply = await slot.request("load", placed);
    if (!reply.ok) throw toSandboxError(reply.failure);
    return new Script(placed, slot);
  }

  /** Stops the workers; pending and later calls fail with SandboxUnavailableError. */
  async close(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.close()));
  }
}

/** Starts the worker pool; resolves once every worker has its QuickJS engine loaded. */
export async function createSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const workers = options.workers ?? Math.min(2, availableParallelism());
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be a positive integer, got ${workers}`);
  const slots = Array.from(
    { length: workers },
    () => new WorkerSlot({ watchdogGraceMs: options.watchdogGraceMs ?? 5000, workerStackMb: options.workerStackMb ?? 64 }),
  );
  try {
    await Promise.all(slots.map((slot) => slot.start()));
  } catch (error) {
    await Promise.all(slots.map((slot) => slot.close()));
    throw error;
  }
  return new Sandbox(slots);
}

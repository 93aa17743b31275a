import type { SandboxFailure } from "./errors.js";
import type { ScriptLimits } from "./limits.js";

export interface ScriptSource {
  source: string;
  limits: ScriptLimits;
}

/**
 * Host → worker. `load` (re)places a script; a call carries the source too whenever the worker may
 * not hold the script (a replacement worker after a crash), so one request always gets one reply.
 */
export type WorkerRequest =
  | ({ type: "load"; id: number } & ScriptSource)
  | { type: "call"; id: number; input: string; load?: ScriptSource }
  | { type: "dispose"; id: number };

/** Worker → host: exactly one per load or call request, in order. */
export type WorkerReply =
  | { ok: true; output: string; logs: string[] }
  | {
      ok: false;
      failure: SandboxFailure;
      /** The engine itself broke; the worker exits right after this reply. */
      fatal: boolean;
    };

/** "ready" once the worker has its QuickJS module, then replies. */
export type WorkerMessage = "ready" | WorkerReply;

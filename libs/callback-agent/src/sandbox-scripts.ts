import { createSandbox, type JsonValue, SandboxUnavailableError, type Script } from "@opsplane/sandbox";
import { ExtractionError, type ScriptCompiler } from "./rules/index.js";

export interface ScriptLimitsOptions {
  timeLimitMs?: number;
  memoryLimitBytes?: number;
  /**
   * Longest a call waits for its worker, busy with the calls before it; past it the call is not run
   * (`script_unavailable`). Unbounded when absent.
   */
  waitLimitMs?: number;
}

export interface SandboxScripts {
  compile: ScriptCompiler;
  close(): Promise<void>;
}

/**
 * Extraction scripts in the QuickJS sandbox (worker threads, time and memory
 * limits): `function extract(msg) { return msg.headers["x-id"]; }`. Scripts are
 * compiled once per distinct source and shared by every rule version using them.
 */
export async function createSandboxScripts(limits: ScriptLimitsOptions = {}): Promise<SandboxScripts> {
  const sandbox = await createSandbox();
  const compiled = new Map<string, Promise<Script>>();
  return {
    compile(source) {
      let script = compiled.get(source);
      if (!script) {
        script = sandbox.compile(source, {
          entry: "extract",
          timeLimitMs: limits.timeLimitMs ?? 50,
          memoryLimitBytes: limits.memoryLimitBytes,
        });
        // Compile errors surface at the first call (and in the sample check on save), never as unhandled rejections.
        script.catch(() => compiled.delete(source));
        compiled.set(source, script);
      }
      const ready = script;
      return async (input) => {
        try {
          return (await (await ready).call(input as unknown as JsonValue, { waitLimitMs: limits.waitLimitMs })).value;
        } catch (err) {
          // Closed, or no worker could start: not the script's verdict on this input.
          if (err instanceof SandboxUnavailableError)
            throw new ExtractionError("script_unavailable", `script could not run: ${err.message}`);
          throw err;
        }
      };
    },
    close: () => sandbox.close(),
  };
}

/** The agent's lazy factory: the sandbox starts only when a rule needs a script. */
export const sandboxScriptCompiler = async (): Promise<ScriptCompiler> => (await createSandboxScripts()).compile;

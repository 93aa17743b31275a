import { parentPort } from "node:worker_threads";
import { startEngine } from "./engine.js";
import type { SandboxFailure } from "./errors.js";
import type { ScriptSource, WorkerMessage, WorkerRequest } from "./protocol.js";
import { ScriptVm, stoppedAtLimit } from "./script-vm.js";

// Worker entry: owns one QuickJS engine and the scripts the host placed here. Requests run one
// at a time; the host queues them (sending the next only after a reply) and watches the clock.

async function main(): Promise<void> {
  const port = parentPort!;
  let engine = await startEngine();
  const current = () => engine;
  const scripts = new Map<number, ScriptVm>();
  const send = (message: WorkerMessage) => port.postMessage(message);

  const load = (id: number, { source, limits }: ScriptSource): SandboxFailure | undefined => {
    scripts.get(id)?.dispose();
    scripts.delete(id);
    const loaded = ScriptVm.load(current, source, limits);
    if (!(loaded instanceof ScriptVm)) return loaded;
    scripts.set(id, loaded);
    return undefined;
  };

  /**
   * After a call stopped at a limit, a fresh engine if that left the memory larger than a fresh
   * one's (see Engine.grown): otherwise each runaway call would start with more free memory than
   * the last and run on longer, while every script call behind it waits. Scripts reload from
   * source on their next call, as after any limit error.
   */
  const renewIfGrown = async () => {
    if (!engine.grown()) return;
    for (const vm of scripts.values()) vm.dispose();
    engine = await startEngine();
  };

  port.on("message", async (request: WorkerRequest) => {
    if (request.type === "dispose") {
      scripts.get(request.id)?.dispose();
      scripts.delete(request.id);
      return;
    }
    try {
      const failure = request.type === "load" ? load(request.id, request) : request.load && load(request.id, request.load);
      if (failure) return send({ ok: false, failure, fatal: false });
      if (request.type === "load") return send({ ok: true, output: "null", logs: [] });
      const vm = scripts.get(request.id);
      if (!vm) throw new Error(`script ${request.id} is not loaded in this worker`);
      const outcome = vm.call(request.input);
      if (!outcome.ok && stoppedAtLimit.has(outcome.failure.kind)) await renewIfGrown();
      send(outcome.ok ? outcome : { ...outcome, fatal: false });
    } catch (error) {
      // An exception escaping the engine (native stack exhausted inside WASM, or a WASM trap) leaves
      // the module's memory inconsistent: report it, then exit so the host starts a clean worker.
      const overflow = error instanceof RangeError && /call stack/i.test(error.message);
      const message = error instanceof Error ? error.message : String(error);
      send({
        ok: false,
        fatal: true,
        failure: overflow
          ? { kind: "stack", message: "script exhausted the engine's native stack before reaching its stack limit", logs: [] }
          : { kind: "crash", message: `sandbox engine failed: ${message}`, logs: [] },
      });
      process.exit(1);
    }
  });
  send("ready");
}

void main();

import { parentPort } from "node:worker_threads";
import { newQuickJSWASMModuleFromVariant, newVariant, RELEASE_SYNC } from "quickjs-emscripten";
import type { SandboxFailure } from "./errors.js";
import { WORKER_MEMORY_BYTES } from "./limits.js";
import { type GrowableMemory, MemoryGrowthCap } from "./memory-growth.js";
import type { ScriptSource, WorkerMessage, WorkerRequest } from "./protocol.js";
import { ScriptVm } from "./script-vm.js";

// Worker entry: owns one QuickJS WASM module and the scripts the host placed here. Requests run one
// at a time, synchronously; the host queues them and watches the clock.

// The compiler's ES lib has no WebAssembly typings; this is the one constructor needed.
const { Memory } = (
  globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number; maximum: number }) => GrowableMemory } }
).WebAssembly;

async function main(): Promise<void> {
  const port = parentPort!;
  // A fixed maximum makes allocation past it fail inside QuickJS (an "out of memory" error) instead
  // of growing the process; the stock build may grow to 2 GiB.
  const page = 64 * 1024;
  const wasmMemory = new Memory({ initial: (16 * 1024 * 1024) / page, maximum: WORKER_MEMORY_BYTES / page });
  // Each call may grow it by about its own memory limit, no more (see MemoryGrowthCap).
  const growth = new MemoryGrowthCap(wasmMemory);
  const qjs = await newQuickJSWASMModuleFromVariant(newVariant(RELEASE_SYNC, { wasmMemory }));
  const scripts = new Map<number, ScriptVm>();
  const send = (message: WorkerMessage) => port.postMessage(message);

  const load = (id: number, { source, limits }: ScriptSource): SandboxFailure | undefined => {
    scripts.get(id)?.dispose();
    scripts.delete(id);
    const loaded = ScriptVm.load(qjs, source, limits, growth);
    if (!(loaded instanceof ScriptVm)) return loaded;
    scripts.set(id, loaded);
    return undefined;
  };

  port.on("message", (request: WorkerRequest) => {
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

import type { QuickJSContext, QuickJSHandle, QuickJSRuntime, QuickJSWASMModule, VmCallResult } from "quickjs-emscripten";
import type { Engine } from "./engine.js";
import type { SandboxErrorKind, SandboxFailure } from "./errors.js";
import { formatBytes, type ScriptLimits } from "./limits.js";
import { LogBuffer } from "./log-buffer.js";
import type { MemoryGrowthCap } from "./memory-growth.js";

/** Name the script's own frames carry in stacks; positions are read from it. */
const SCRIPT_FILE = "script.js";
const HOST_FILE = "<sandbox>";

// Formats console arguments inside the VM so values print as the script sees them; `emit` is a host
// function passed in as an argument so it never appears on the script's global object.
const CONSOLE_PRELUDE = `(function (emit) {
  const stringify = JSON.stringify, toString = String, ErrorClass = Error;
  const format = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof ErrorClass) return toString(v.name) + ": " + toString(v.message);
    try { const s = stringify(v); if (s !== undefined) return s; } catch {}
    try { return toString(v); } catch { return "[unprintable]"; }
  };
  const log = (...args) => emit(args.map(format).join(" "));
  globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log, trace: log });
})`;

// Captured before the script runs, so a script that replaces JSON or Error cannot fool the host.
const HELPERS = `(function () {
  const stringify = JSON.stringify, parse = JSON.parse, toString = String, ErrorClass = Error;
  const describe = (e) => {
    if (e instanceof ErrorClass) {
      return stringify({ name: toString(e.name), message: toString(e.message), stack: typeof e.stack === "string" ? e.stack : "" });
    }
    let text;
    try { text = stringify(e); } catch {}
    return stringify({ thrown: text === undefined ? toString(e) : text });
  };
  return [parse, (v) => stringify(v), describe];
})()`;

type Described = { name: string; message: string; stack: string } | { thrown: string };
type Failure = Omit<SandboxFailure, "logs">;
export type CallOutcome = { ok: true; output: string; logs: string[] } | { ok: false; failure: SandboxFailure };

/** Calls stopped at a limit: the runtime may be half-way through something, so the next call starts from a fresh one. */
export const stoppedAtLimit: ReadonlySet<SandboxErrorKind> = new Set(["timeout", "memory", "stack"]);

/**
 * Interrupt handler that enforces the time limit and, by sampling, the memory limit; remembers which
 * one it enforced so the failure names the right limit.
 *
 * Memory is sampled because QuickJS's own limit does not work under Emscripten: its allocator
 * accounting sees every block as 0 bytes, so JS_SetMemoryLimit only rejects a single oversized
 * allocation (justjake/quickjs-emscripten#271). The sample walks the heap, so it is spaced out to
 * cost at most about a fifth of the run time.
 */
class Guard {
  private until = Number.POSITIVE_INFINITY;
  private nextSample = 0;
  tripped: "timeout" | "memory" | undefined;

  constructor(
    private readonly runtime: QuickJSRuntime,
    private readonly memoryLimitBytes: number,
    /** The worker's WASM memory growth, capped per call while memory is enforced (see MemoryGrowthCap). */
    private readonly growth: MemoryGrowthCap,
  ) {}

  arm(ms: number, { sampleMemory = true } = {}): void {
    this.until = performance.now() + ms;
    this.nextSample = sampleMemory ? 0 : Number.POSITIVE_INFINITY;
    this.tripped = undefined;
    if (sampleMemory) this.growth.cap(this.memoryLimitBytes);
    else this.growth.release();
  }

  disarm(): void {
    this.until = Number.POSITIVE_INFINITY;
    this.nextSample = Number.POSITIVE_INFINITY;
    this.growth.release();
  }

  readonly check = (): boolean => {
    if (this.tripped) return true;
    // A refused growth means the call is past its memory limit, even if the script caught the error.
    if (this.growth.refused) {
      this.tripped = "memory";
      return true;
    }
    const now = performance.now();
    if (now >= this.until) this.tripped = "timeout";
    else if (now >= this.nextSample) {
      if (heapBytes(this.runtime) > this.memoryLimitBytes) this.tripped = "memory";
      const took = performance.now() - now;
      this.nextSample = performance.now() + Math.max(1, 4 * took);
    }
    return this.tripped !== undefined;
  };
}

/** Bytes the runtime's live objects, strings and code occupy (QuickJS's own heap walk). */
function heapBytes(runtime: QuickJSRuntime): number {
  const line = /memory used\s+\d+\s+(\d+)/.exec(runtime.dumpMemoryUsage());
  return line ? Number(line[1]) : 0;
}

/** One loaded copy of a script: its own runtime (so its memory limit is its own) with the source evaluated once. */
class Instance {
  readonly guard: Guard;
  readonly logs: LogBuffer;
  readonly runtime: QuickJSRuntime;
  readonly context: QuickJSContext;
  private readonly handles: QuickJSHandle[] = [];
  private parse!: QuickJSHandle;
  private stringify!: QuickJSHandle;
  private describe!: QuickJSHandle;
  private entry: QuickJSHandle | undefined;

  constructor(
    qjs: QuickJSWASMModule,
    private readonly limits: ScriptLimits,
    growth: MemoryGrowthCap,
  ) {
    this.logs = new LogBuffer(limits);
    this.runtime = qjs.newRuntime();
    this.runtime.setMemoryLimit(limits.memoryLimitBytes);
    this.runtime.setMaxStackSize(limits.stackLimitBytes);
    this.guard = new Guard(this.runtime, limits.memoryLimitBytes, growth);
    this.runtime.setInterruptHandler(this.guard.check);
    this.context = this.runtime.newContext();
    this.installHelpers();
  }

  private installHelpers(): void {
    const ctx = this.context;
    const emit = ctx.newFunction("emit", (line) => {
      this.logs.add(ctx.getString(line));
    });
    const prelude = ctx.unwrapResult(ctx.evalCode(CONSOLE_PRELUDE, HOST_FILE));
    ctx.unwrapResult(ctx.callFunction(prelude, ctx.undefined, emit)).dispose();
    prelude.dispose();
    emit.dispose();
    const helpers = ctx.unwrapResult(ctx.evalCode(HELPERS, HOST_FILE));
    [this.parse, this.stringify, this.describe] = [0, 1, 2].map((i) => this.keep(ctx.getProp(helpers, i)));
    helpers.dispose();
  }

  private keep(handle: QuickJSHandle): QuickJSHandle {
    this.handles.push(handle);
    return handle;
  }

  /** Runs the top-level code and finds the entry function; returns why not on failure. */
  load(source: string): SandboxFailure | undefined {
    const ctx = this.context;
    const { entry, timeLimitMs } = this.limits;
    this.guard.arm(timeLimitMs);
    try {
      const evaluated = ctx.evalCode(source, SCRIPT_FILE);
      if (evaluated.error) return this.loadFailure(this.classify(evaluated.error));
      evaluated.value.dispose();
      // A global getter named like the entry is script code too, so this lookup can fail like any call.
      const lookup = ctx.evalCode(`typeof ${entry} === "function" ? ${entry} : undefined`, HOST_FILE);
      if (lookup.error) return this.loadFailure(this.classify(lookup.error));
      const found = this.keep(lookup.value);
      if (ctx.typeof(found) !== "function") {
        return { kind: "compile", message: `script does not define a function named ${entry}`, logs: this.logs.take() };
      }
      this.entry = found;
      this.logs.take();
      return undefined;
    } finally {
      this.guard.disarm();
    }
  }

  private loadFailure(failure: Failure): SandboxFailure {
    const where = failure.line === undefined ? "" : ` (line ${failure.line}, column ${failure.column})`;
    const prefix = failure.kind === "script" ? "" : "top-level code: ";
    return { ...failure, kind: "compile", message: `${prefix}${failure.message}${where}`, logs: this.logs.take() };
  }

  call(input: string): CallOutcome {
    const ctx = this.context;
    this.guard.arm(this.limits.timeLimitMs);
    try {
      const parsed = this.callWithString(this.parse, input);
      if (parsed.error) return this.fail(this.inputFailure(this.classify(parsed.error)));
      const returned = ctx.callFunction(this.entry!, ctx.undefined, parsed.value);
      parsed.value.dispose();
      if (returned.error) return this.fail(this.classify(returned.error));
      const settled = this.settle(returned.value);
      if (settled.error) return this.fail(settled.error);
      return this.encode(settled.value);
    } finally {
      this.guard.disarm();
    }
  }

  private callWithString(fn: QuickJSHandle, text: string): VmCallResult<QuickJSHandle> {
    const arg = this.context.newString(text);
    try {
      return this.context.callFunction(fn, this.context.undefined, arg);
    } finally {
      arg.dispose();
    }
  }

  /** Async entry functions work: with no timers or I/O, running the job queue settles them. */
  private settle(value: QuickJSHandle): { value: QuickJSHandle; error?: undefined } | { error: Failure } {
    const ctx = this.context;
    const initial = ctx.getPromiseState(value);
    if (initial.type === "fulfilled" && initial.notAPromise) return { value };
    if (initial.type === "fulfilled") initial.value.dispose();
    if (initial.type === "rejected") initial.error.dispose();
    const jobs = this.runtime.executePendingJobs();
    if (jobs.error) {
      value.dispose();
      return { error: this.classify(jobs.error) };
    }
    const state = ctx.getPromiseState(value);
    value.dispose();
    if (state.type === "fulfilled") return { value: state.value };
    if (state.type === "rejected") return { error: this.classify(state.error) };
    return { error: { kind: "script", message: "script returned a promise that never settled (there are no timers or I/O to wait for)" } };
  }

  private encode(value: QuickJSHandle): CallOutcome {
    const ctx = this.context;
    const type = ctx.typeof(value);
    if (type === "function" || type === "symbol" || type === "bigint") {
      value.dispose();
      return this.fail({
        kind: "output",
        message: `script returned a ${type}; return JSON data (object, array, string, number, boolean or null)`,
      });
    }
    const encoded = ctx.callFunction(this.stringify, ctx.undefined, value);
    value.dispose();
    if (encoded.error) {
      const failure = this.classify(encoded.error);
      return this.fail(failure.kind === "script" ? { kind: "output", message: `result is not JSON: ${failure.message}` } : failure);
    }
    // undefined (a bare `return;`, or a missing field) reads as "no result", which JSON spells null.
    const output = ctx.typeof(encoded.value) === "string" ? ctx.getString(encoded.value) : "null";
    encoded.value.dispose();
    const bytes = Buffer.byteLength(output);
    if (bytes > this.limits.maxOutputBytes) {
      return this.fail({
        kind: "output",
        message: `result is ${bytes} bytes, over the output limit of ${formatBytes(this.limits.maxOutputBytes)}`,
      });
    }
    return { ok: true, output, logs: this.logs.take() };
  }

  private fail(failure: Failure): CallOutcome {
    return { ok: false, failure: { ...failure, logs: this.logs.take() } };
  }

  /** The JSON input is the host's, not the script's: say so when it is what broke a limit. */
  private inputFailure(failure: Failure): Failure {
    return failure.kind === "stack"
      ? { ...failure, message: `input is nested too deeply for the stack limit of ${formatBytes(this.limits.stackLimitBytes)}` }
      : failure;
  }

  /** Turns a thrown VM value into a failure, telling limit hits apart from the script's own errors. */
  private classify(error: QuickJSHandle): Failure {
    const { timeLimitMs, memoryLimitBytes, stackLimitBytes } = this.limits;
    const timeout: Failure = { kind: "timeout", message: `script exceeded its time limit of ${timeLimitMs} ms` };
    const memory: Failure = { kind: "memory", message: `script exceeded its memory limit of ${formatBytes(memoryLimitBytes)}` };
    if (this.guard.tripped) {
      error.dispose();
      return this.guard.tripped === "timeout" ? timeout : memory;
    }
    const described = this.read(error);
    if (this.guard.tripped === "timeout") return timeout;
    if (described === undefined) return memory;
    if ("thrown" in described) return { kind: "script", message: `script threw a non-Error value: ${described.thrown}` };
    const { name, message, stack } = described;
    // Also raised when one allocation alone is over the limit, or the worker's memory is full.
    if (name === "InternalError" && message === "out of memory") return memory;
    if (message === "stack overflow")
      return { kind: "stack", message: `script exceeded its stack limit of ${formatBytes(stackLimitBytes)}` };
    const position = new RegExp(`${SCRIPT_FILE.replace(".", "\\.")}:(\\d+):(\\d+)`).exec(stack);
    return {
      kind: "script",
      message: `${name}: ${message}`,
      ...(position && { line: Number(position[1]), column: Number(position[2]) }),
      ...(stack.trim() && { scriptStack: stack.trimEnd() }),
    };
  }

  /**
   * Reads the thrown value through the captured `describe`, with the memory limit lifted (the script
   * may have used it all up) but a fresh deadline (a thrown object's getters are script code).
   * Undefined when even that fails, which only happens when the runtime is out of memory.
   */
  private read(error: QuickJSHandle): Described | undefined {
    const ctx = this.context;
    this.runtime.setMemoryLimit(-1);
    this.guard.arm(this.limits.timeLimitMs, { sampleMemory: false });
    try {
      const result = ctx.callFunction(this.describe, ctx.undefined, error);
      if (result.error) {
        result.error.dispose();
        return undefined;
      }
      const text = ctx.getString(result.value);
      result.value.dispose();
      return JSON.parse(text) as Described;
    } finally {
      error.dispose();
      this.runtime.setMemoryLimit(this.limits.memoryLimitBytes);
    }
  }

  dispose(): void {
    for (const handle of this.handles) handle.dispose();
    this.context.dispose();
    this.runtime.dispose();
  }
}

/**
 * A compiled script inside one worker: loads once, serves many calls, and after a limit error
 * throws the runtime away and reloads the source so the next call starts clean. It reloads into
 * the worker's current engine, which the worker may replace once every script is disposed.
 */
export class ScriptVm {
  private instance: Instance | undefined;

  private constructor(
    private readonly engine: () => Engine,
    private readonly source: string,
    private readonly limits: ScriptLimits,
  ) {}

  /** Loads the script; a failure means it cannot be used (SandboxCompileError on the host). */
  static load(engine: () => Engine, source: string, limits: ScriptLimits): ScriptVm | SandboxFailure {
    const vm = new ScriptVm(engine, source, limits);
    const failure = vm.reload();
    return failure ?? vm;
  }

  private reload(): SandboxFailure | undefined {
    const { qjs, growth } = this.engine();
    const instance = new Instance(qjs, this.limits, growth);
    const failure = instance.load(this.source);
    if (failure) {
      instance.dispose();
      return failure;
    }
    this.instance = instance;
    return undefined;
  }

  call(input: string): CallOutcome {
    if (!this.instance) {
      const failure = this.reload();
      if (failure) return { ok: false, failure };
    }
    const outcome = this.instance!.call(input);
    if (!outcome.ok && stoppedAtLimit.has(outcome.failure.kind)) this.dispose();
    return outcome;
  }

  dispose(): void {
    this.instance?.dispose();
    this.instance = undefined;
  }
}

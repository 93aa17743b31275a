/** What went wrong, as a stable string for HTTP error bodies, logs and metrics. */
export type SandboxErrorKind = "compile" | "timeout" | "memory" | "stack" | "script" | "output" | "crash" | "unavailable";

/** Plain form of a sandbox error; crosses the worker boundary and rebuilds the typed class on the host. */
export interface SandboxFailure {
  kind: SandboxErrorKind;
  message: string;
  /** 1-based position in the script source, when the error points at one. */
  line?: number;
  column?: number;
  /** The script's own stack trace (QuickJS frames only, never host frames). */
  scriptStack?: string;
  /** Lines the script wrote with console.* before it failed. */
  logs: string[];
}

export abstract class SandboxError extends Error {
  abstract readonly kind: SandboxErrorKind;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly scriptStack: string | undefined;
  readonly logs: readonly string[];

  constructor(failure: Omit<SandboxFailure, "kind">) {
    super(failure.message);
    this.name = new.target.name;
    this.line = failure.line;
    this.column = failure.column;
    this.scriptStack = failure.scriptStack;
    this.logs = failure.logs;
  }
}

/** The source does not parse, its top-level code fails, or it does not define the entry function. */
export class SandboxCompileError extends SandboxError {
  readonly kind = "compile";
}
/** A call ran past its time limit (also used when the watchdog has to stop a stuck worker). */
export class SandboxTimeoutError extends SandboxError {
  readonly kind = "timeout";
}
/** A call allocated past its memory limit. */
export class SandboxMemoryError extends SandboxError {
  readonly kind = "memory";
}
/** A call recursed past its stack limit. */
export class SandboxStackError extends SandboxError {
  readonly kind = "stack";
}
/** The script threw. */
export class SandboxScriptError extends SandboxError {
  readonly kind = "script";
}
/** The script returned something that is not JSON, or a result over the output limit. */
export class SandboxOutputError extends SandboxError {
  readonly kind = "output";
}
/** The worker running the script died (e.g. the engine itself ran out of native stack); it is replaced. */
export class SandboxCrashError extends SandboxError {
  readonly kind = "crash";
}
/**
 * The call did not run, or was stopped, for the sandbox's own reason: it is closed, its worker
 * could not start, or it was busy past the call's wait limit. Says nothing about the script: the
 * same call may work later.
 */
export class SandboxUnavailableError extends SandboxError {
  readonly kind = "unavailable";
}

const classes = {
  compile: SandboxCompileError,
  timeout: SandboxTimeoutError,
  memory: SandboxMemoryError,
  stack: SandboxStackError,
  script: SandboxScriptError,
  output: SandboxOutputError,
  crash: SandboxCrashError,
  unavailable: SandboxUnavailableError,
} satisfies Record<SandboxErrorKind, new (failure: SandboxFailure) => SandboxError>;

export function toSandboxError(failure: SandboxFailure): SandboxError {
  return new classes[failure.kind](failure);
}

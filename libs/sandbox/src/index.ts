export {
  SandboxCompileError,
  SandboxCrashError,
  SandboxError,
  type SandboxErrorKind,
  SandboxMemoryError,
  SandboxOutputError,
  SandboxScriptError,
  SandboxStackError,
  SandboxTimeoutError,
  SandboxUnavailableError,
} from "./errors.js";
export { defaultLimits, type ScriptLimits, type ScriptOptions } from "./limits.js";
export { createSandbox, Sandbox, type SandboxOptions } from "./sandbox.js";
export { type JsonValue, type SandboxResult, Script } from "./script.js";

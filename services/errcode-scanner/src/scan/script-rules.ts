import { createSandbox, type JsonValue, type Script } from "@opsplane/sandbox";
import type { ErrorCodeEntry } from "./engine.js";
import type { ScriptRunner } from "./validate.js";

/**
 * Custom rules as sandboxed scripts (libs/sandbox, QuickJS with time and memory limits). A script
 * defines `function validate(entry)` taking `{code, message, messageKind, exceptionClass, family,
 * locations}` and returns null, a complaint string or an array of complaint strings.
 */
export async function createScriptRunner(
  scripts: Array<{ name: string; source: string; timeLimitMs?: number }>,
): Promise<{ run: ScriptRunner; close(): Promise<void> }> {
  const sandbox = await createSandbox({ workers: 1 });
  const compiled = new Map<string, Script>();
  try {
    for (const s of scripts)
      compiled.set(s.name, await sandbox.compile(s.source, { entry: "validate", timeLimitMs: s.timeLimitMs ?? 200 }));
  } catch (err) {
    await sandbox.close();
    throw err;
  }
  const run: ScriptRunner = async (name, entry: ErrorCodeEntry) => {
    const script = compiled.get(name);
    if (!script) return [];
    try {
      const { value } = await script.call(entry as unknown as JsonValue);
      if (value === null || value === true || value === false) return [];
      if (typeof value === "string") return [value];
      if (Array.isArray(value)) return value.map((v) => String(v));
      return [`rule returned ${JSON.stringify(value)}; expected null, a string or an array of strings`];
    } catch (err) {
      // A failing rule is itself a finding: the code was not checked.
      return [`rule failed: ${(err as Error).message}`];
    }
  };
  return { run, close: () => sandbox.close() };
}

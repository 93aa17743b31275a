import type { ErrorCodeEntry } from "./engine.js";
import type { Location } from "./extract.js";
import type { Rules } from "./rules.js";

/** A code in the compliant registry (seed claims 5 and 6). */
export interface RegistryEntry {
  code: string;
  message: string | null;
  exceptionFamily: string;
}

export type RuleId =
  | "code-pattern"
  | "code-prefix"
  | "message-required"
  | "message-length"
  | "message-leak"
  | "code-multiple-messages"
  | "code-multiple-families"
  | "registry-conflict"
  | `script:${string}`;

export interface Violation {
  code: string;
  rule: RuleId;
  message: string;
  exceptionClass: string;
  locations: Location[];
}

/** Runs one custom rule (a sandboxed script) on one error code; returns its complaints. */
export type ScriptRunner = (name: string, entry: ErrorCodeEntry) => Promise<string[]>;

export interface ValidationResult {
  violations: Violation[];
  /** Codes skipped because the registry already holds them with the same message. */
  alreadyCompliant: number;
  /** Codes that passed every rule: the caller adds them to the registry. */
  newlyCompliant: RegistryEntry[];
}

const registryKey = (code: string, message: string | null) => `${code}\u0000${message ?? ""}`;

/**
 * Checks the error codes found in one scan. Codes the registry already holds with the same
 * message are not checked again; a registry code with another message is a conflict; codes
 * that pass every rule come back as new registry entries.
 */
export async function validate(
  entries: ErrorCodeEntry[],
  rules: Rules,
  registry: readonly RegistryEntry[],
  runScript?: ScriptRunner,
): Promise<ValidationResult> {
  const violations: Violation[] = [];
  const registered = new Set(registry.map((r) => registryKey(r.code, r.message)));
  const registryByCode = new Map<string, RegistryEntry[]>();
  for (const r of registry) registryByCode.set(r.code, [...(registryByCode.get(r.code) ?? []), r]);

  // Whole-registry views: every message and family a code has, here and already registered.
  const messagesByCode = new Map<string, Set<string>>();
  const familiesByCode = new Map<string, Set<string>>();
  const note = (map: Map<string, Set<string>>, code: string, value: string) => map.set(code, (map.get(code) ?? new Set()).add(value));
  for (const r of registry) {
    if (r.message !== null) note(messagesByCode, r.code, r.message);
    note(familiesByCode, r.code, r.exceptionFamily);
  }
  for (const e of entries) {
    if (e.messageKind === "constant" && e.message !== null) note(messagesByCode, e.code, e.message);
    note(familiesByCode, e.code, e.family);
  }

  let alreadyCompliant = 0;
  const newlyCompliant: RegistryEntry[] = [];
  const flag = (e: ErrorCodeEntry, rule: RuleId, message: string) =>
    violations.push({ code: e.code, rule, message, exceptionClass: e.exceptionClass, locations: e.locations });

  for (const e of entries) {
    if (e.messageKind !== "dynamic" && registered.has(registryKey(e.code, e.message))) {
      alreadyCompliant++;
      continue;
    }
    const before = violations.length;
    const known = registryByCode.get(e.code);
    if (known && e.messageKind === "constant" && !known.some((r) => r.message === e.message))
      flag(e, "registry-conflict", `registry has ${e.code} as ${JSON.stringify(known[0].message)}, found ${JSON.stringify(e.message)}`);
    if (rules.codePattern && !rules.codePattern.test(e.code))
      flag(e, "code-pattern", `code ${JSON.stringify(e.code)} does not match ${rules.codePattern.source}`);
    const prefixes =
      rules.allowedPrefixes && (rules.system ? (rules.allowedPrefixes[rules.system] ?? []) : Object.values(rules.allowedPrefixes).flat());
    if (prefixes && !prefixes.some((p) => e.code.startsWith(p)))
      flag(
        e,
        "code-prefix",
        `code ${e.code} does not start with an allowed prefix${rules.system ? ` of system ${rules.system}` : ""} (${prefixes.join(", ") || "none"})`,
      );
    if (e.messageKind === "constant" && e.message !== null) {
      if (e.message.trim().length < rules.messageMinLength || e.message.length > rules.messageMaxLength)
        flag(
          e,
          "message-length",
          `message of ${e.message.length} characters is outside ${rules.messageMinLength}–${rules.messageMaxLength}`,
        );
      const leak = rules.leakPatterns.find((p) => p.test(e.message as string));
      if (leak) flag(e, "message-leak", `message exposes internals (matches /${leak.source}/): ${JSON.stringify(e.message)}`);
    } else if (e.messageKind === "absent" && rules.messageRequired)
      flag(e, "message-required", `code ${e.code} is thrown without a message`);
    const messages = messagesByCode.get(e.code);
    if (rules.uniqueMessage && messages && messages.size > 1)
      flag(
        e,
        "code-multiple-messages",
        `code ${e.code} has ${messages.size} messages: ${[...messages].map((m) => JSON.stringify(m)).join(", ")}`,
      );
    const families = familiesByCode.get(e.code);
    if (rules.uniqueFamily && families && families.size > 1)
      flag(
        e,
        "code-multiple-families",
        `code ${e.code} is thrown by ${families.size} exception families: ${[...families].sort().join(", ")}`,
      );
    if (runScript)
      for (const s of rules.scripts) for (const complaint of await runScript(s.name, e)) flag(e, `script:${s.name}`, complaint);
    if (violations.length === before && e.messageKind !== "dynamic") {
      newlyCompliant.push({ code: e.code, message: e.message, exceptionFamily: e.family });
      registered.add(registryKey(e.code, e.message));
    }
  }
  return { violations, alreadyCompliant, newlyCompliant };
}

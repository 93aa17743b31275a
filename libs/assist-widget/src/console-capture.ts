import type { ConsoleEntry } from "./protocol.js";

const levels = ["log", "info", "warn", "error", "debug"] as const;

function describe(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}${value.stack ? `\n${value.stack}` : ""}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Mirrors console output and uncaught errors to `onEntry`, leaving the page's console working as before. */
export function captureConsole(onEntry: (e: ConsoleEntry) => void): void {
  for (const level of levels) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      original(...args);
      onEntry({ level, text: args.map(describe).join(" ").slice(0, 16000), at: Date.now() });
    };
  }
  window.addEventListener("error", (e) => onEntry({ level: "error", text: `Uncaught ${describe(e.error ?? e.message)}`, at: Date.now() }));
  window.addEventListener("unhandledrejection", (e) =>
    onEntry({ level: "error", text: `Unhandled rejection: ${describe(e.reason)}`, at: Date.now() }),
  );
}

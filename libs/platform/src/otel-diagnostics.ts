import type { DiagLogger } from "@opentelemetry/api";
import type pino from "pino";
import { createLogger } from "./logger.js";

/** At most one SDK complaint a minute reaches the log; the next one says how many were left out. */
const quietMs = 60_000;

/** The SDK hands over an error as its JSON (`stringifyException`): its message is what an operator reads. A
 * component's logger puts its name first (`@opentelemetry/…`, then the message). */
function readable(message: string): string {
  if (!message.startsWith("{")) return message;
  try {
    const parsed = JSON.parse(message) as { message?: unknown };
    return typeof parsed.message === "string" ? parsed.message : message;
  } catch {
    return message;
  }
}

/** The collector's URL as the log may show it: a user or password in it is left out. */
function withoutCredentials(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    if (!url.username && !url.password) return endpoint;
    url.username = "";
    url.password = "";
    return url.href;
  } catch {
    return "(not a URL)";
  }
}

/**
 * The tracing SDK's own warnings and errors (a collector out of reach, spans dropped because its queue is full)
 * as the service's JSON log lines. Without a logger the SDK says nothing, so traces are lost unnoticed. An
 * unreachable collector fails every export, so the lines are held to one a minute.
 */
export function otelDiagnostics(service: string, destination?: pino.DestinationStream): DiagLogger {
  const log = createLogger(service, process.env.LOG_LEVEL ?? "info", destination);
  const endpoint = withoutCredentials(process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "");
  let lastAt = Number.NEGATIVE_INFINITY;
  let leftOut = 0;
  const report =
    (level: "error" | "warn") =>
    (message: string, ...args: unknown[]) => {
      const now = Date.now();
      if (now - lastAt < quietMs) {
        leftOut++;
        return;
      }
      lastAt = now;
      const fields = leftOut ? { otel: true, leftOut } : { otel: true };
      leftOut = 0;
      log[level](
        fields,
        `tracing: ${[message, ...args].map((a) => readable(String(a))).join(": ")} (spans may be lost; OTEL_EXPORTER_OTLP_ENDPOINT=${endpoint})`,
      );
    };
  const ignore = () => {};
  return { error: report("error"), warn: report("warn"), info: ignore, debug: ignore, verbose: ignore };
}

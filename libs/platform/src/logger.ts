import pino from "pino";

export type Logger = pino.Logger;

/** JSON logs on stdout; credentials and secrets never reach them. */
export function createLogger(service: string, level: string): Logger {
  return pino({
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        "req.headers.authorization",
        "req.headers.cookie",
        'req.headers["x-agent-token"]',
        "*.password",
        "*.secret",
        "*.token",
        "*.apiKey",
      ],
      censor: "[redacted]",
    },
  });
}

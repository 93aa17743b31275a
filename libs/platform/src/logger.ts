import pino from "pino";

export type Logger = pino.Logger;

const censor = "[redacted]";

/** Names of query parameters that carry credentials (matched case-insensitively against the decoded name); `session` alone (an id) is kept. */
const credentialParam =
  /token|secret|passw|passphrase|passcode|pwd|signature|credential|jwt|assertion|saml|(api|access|app|client|mch|merchant|private|session|sign)[-_]?key|sess(ion)?[-_]?id|sign$|^(key|sig|ticket|auth|authorization|otp|totp)$/i;
/**
 * Names of headers that carry credentials (`X-Auth`, `Private-Key`, `X-Mch-Key`, `X-Passwd`, `X-Session` too), and
 * signatures and keys named short, as the query's `sig` and `key` are: `X-Sig`, PayPal's `Paypal-Transmission-Sig`,
 * `X-Key`, Shopify's `X-Shopify-Hmac-Sha256` (an `Idempotency-Key` is no secret).
 */
const credentialHeader =
  /auth|cookie|session|token|secret|passw|passphrase|pwd|(api|access|app|client|mch|merchant|private|sign)[-_]?key|signature|sign$|credential|hmac|(^|[-_])sig$|(^|[-_])(?<!idempotency[-_])key$/i;

/** Whether a header's value is a credential: censored in logs, shown masked where a service shows headers. */
export const isCredentialHeader = (name: string): boolean => credentialHeader.test(name);

// A parameter starts after `?`, `&`, `;` (matrix parameters such as `;jsessionid=`) or `#`. A credential's value runs
// to the next `&`, `#` or whitespace, a `;` included (URLSearchParams reads `sign=abc;def` as one value), quotes and
// brackets too (a `?` in it is kept in it: better redact too much, such as a closing quote, than leak a part).
const paramName = /[?&;#]([^=&;#\s]+)=/g;
const valueEnd = /[&#\s]/g;
const userinfoPassword = /(\b[a-z][a-z\d+.-]*:\/\/[^\s/?#@:]*:)[^\s/?#@]*@/gi;

const decoded = (name: string) => {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "));
  } catch {
    return name;
  }
};

/**
 * Replaces the values of credential query parameters (`?token=…`, `&X-Amz-Signature=…`, `&api_key=…`)
 * and the password of `scheme://user:password@host` with `[redacted]`, wherever they occur in `text`:
 * a request URL, a URL logged by a service, or an error message quoting one. Everything else is kept
 * as it was, so the log still shows which route and which parameters were used.
 */
export function redactCredentials(text: string): string {
  let out = "";
  let last = 0;
  for (const m of text.matchAll(paramName)) {
    // A name inside a value already redacted is part of that value.
    if (m.index < last || !credentialParam.test(decoded(m[1]!))) continue;
    const start = m.index + m[0].length;
    valueEnd.lastIndex = start;
    const end = valueEnd.exec(text)?.index ?? text.length;
    out += `${text.slice(last, start)}${censor}`;
    last = end;
  }
  return (out + text.slice(last)).replace(userinfoPassword, `$1${censor}@`);
}

/** The request as logged by fastify ("incoming request", WebSocket upgrades included), its URL redacted. */
function requestSerializer(req: {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  headers?: Record<string, unknown>;
  socket?: { remoteAddress?: string; remotePort?: number };
}) {
  return {
    method: req.method,
    url: req.url === undefined ? undefined : redactCredentials(req.url),
    version: req.headers?.["accept-version"],
    host: req.host ?? req.headers?.host,
    remoteAddress: req.ip ?? req.socket?.remoteAddress,
    remotePort: req.socket?.remotePort,
  };
}

function headersSerializer(headers: Record<string, unknown>) {
  if (!headers || typeof headers !== "object") return headers;
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, isCredentialHeader(name) ? censor : value]));
}

/** Errors, and the plain messages some call sites log as `err`, with credentials in their text redacted. */
function errorSerializer(err: unknown) {
  if (typeof err === "string") return redactCredentials(err);
  if (typeof err !== "object" || err === null) return err;
  const serialized = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  // Not error-like: pino hands the caller's own object back, which is not ours to change.
  if (serialized === err) return err;
  for (const [key, value] of Object.entries(serialized)) if (typeof value === "string") serialized[key] = redactCredentials(value);
  return serialized;
}

/**
 * JSON logs on stdout (or `destination`); credentials and secrets never reach them: request URLs (every service's request
 * log), `url`, `headers` and `err` fields go through the serializers above, and `*.password`-like
 * fields are censored.
 */
export function createLogger(service: string, level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Fastify takes the logger's own serializers over its defaults (lib/logger-pino.js).
      serializers: {
        req: requestSerializer,
        url: (url: unknown) => (typeof url === "string" ? redactCredentials(url) : url),
        headers: headersSerializer,
        err: errorSerializer,
      },
      redact: {
        paths: ["password", "secret", "token", "apiKey", "*.password", "*.secret", "*.token", "*.apiKey"],
        censor,
      },
    },
    destination,
  );
}

/**
 * Headers never forwarded by our proxies: those that describe one connection (RFC 9110 §7.6.1), and
 * `Expect`, because Node's server has already answered `100-continue` to the caller before the request
 * is forwarded (the expectation is met at this hop; undici refuses to send it at all).
 */
export const hopByHopHeaders = new Set([
  "connection",
  "expect",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Copies `headers` without hop-by-hop ones, including those the Connection header names. */
export function endToEndHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    const name = k.toLowerCase();
    if (v === undefined || hopByHopHeaders.has(name) || named.has(name)) continue;
    out[name] = v;
  }
  return out;
}

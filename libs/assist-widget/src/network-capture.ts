import type { NetworkEntry } from "./protocol.js";

/** Bodies are kept to this before masking (the sanitiser then cuts them to `ASSIST_NETWORK_BODY_MAX_BYTES`). */
const rawBodyLimit = 65536;

const absolute = (url: string) => {
  try {
    return new URL(url, location.href).href;
  } catch {
    return url;
  }
};

const bodyText = (body: unknown): string | undefined => {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return body.slice(0, rawBodyLimit);
  if (body instanceof URLSearchParams) return body.toString().slice(0, rawBodyLimit);
  return `[${Object.prototype.toString.call(body).slice(8, -1)}]`;
};

/**
 * Records the page's API calls made with fetch and XMLHttpRequest: method, URL, status and timing,
 * and the bodies only of calls `capturesBody` accepts (the relay's `ASSIST_NETWORK_BODY_URLS`);
 * the others' bodies are never read. No header is captured (so no Authorization, Cookie or
 * Set-Cookie). Calls to the relay itself are left out. Entries are masked when they are sent.
 */
export function captureNetwork(onEntry: (e: NetworkEntry) => void, capturesBody: (url: string) => boolean, ignorePrefix: string): void {
  const originalFetch = window.fetch.bind(window);
  window.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = absolute(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (url.startsWith(ignorePrefix)) return originalFetch(input, init);
    const startedAt = Date.now();
    const bodies = capturesBody(url);
    const requestBody = bodies ? bodyText(init?.body) : undefined;
    const entry = (status: number) => ({
      via: "fetch" as const,
      method,
      url,
      status,
      startedAt,
      durationMs: Date.now() - startedAt,
      requestBody,
    });
    try {
      const response = await originalFetch(input, init);
      if (!bodies) onEntry(entry(response.status));
      else
        response
          .clone()
          .text()
          .then(
            (text) => onEntry({ ...entry(response.status), responseBody: text.slice(0, rawBodyLimit) }),
            () => onEntry(entry(response.status)),
          );
      return response;
    } catch (err) {
      onEntry({ ...entry(0), error: String(err) });
      throw err;
    }
  };

  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  const calls = new WeakMap<XMLHttpRequest, { method: string; url: string }>();
  XMLHttpRequest.prototype.open = function (this: XMLHttpRequest, method: string, url: string | URL, ...rest: unknown[]) {
    calls.set(this, { method: method.toUpperCase(), url: absolute(String(url)) });
    return (open as (...a: unknown[]) => void).call(this, method, url, ...rest);
  } as typeof XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.send = function (this: XMLHttpRequest, body?: Document | XMLHttpRequestBodyInit | null) {
    const call = calls.get(this);
    if (call && !call.url.startsWith(ignorePrefix)) {
      const startedAt = Date.now();
      const bodies = capturesBody(call.url);
      const requestBody = bodies ? bodyText(body) : undefined;
      this.addEventListener("loadend", () => {
        const textual = this.responseType === "" || this.responseType === "text";
        onEntry({
          via: "xhr",
          ...call,
          status: this.status,
          startedAt,
          durationMs: Date.now() - startedAt,
          requestBody,
          responseBody: bodies && textual ? this.responseText.slice(0, rawBodyLimit) : undefined,
          ...(this.status === 0 ? { error: "network error" } : {}),
        });
      });
    }
    return send.call(this, body);
  };
}

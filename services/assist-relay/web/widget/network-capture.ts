import type { NetworkEntry } from "../../src/protocol.js";

const bodyText = (body: unknown): string | undefined => {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return body;
  if (body instanceof URLSearchParams) return body.toString();
  return `[${Object.prototype.toString.call(body).slice(8, -1)}]`;
};

/**
 * Records the page's API calls made with fetch and XMLHttpRequest: method,
 * URL, status, timing and (masked, capped) bodies. Calls to the relay itself
 * are left out.
 */
export function captureNetwork(onEntry: (e: NetworkEntry) => void, maskBody: (body: string) => string, ignorePrefix: string): void {
  const masked = (b: string | undefined) => (b === undefined ? undefined : maskBody(b));
  const originalFetch = window.fetch.bind(window);
  window.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (url.startsWith(ignorePrefix)) return originalFetch(input, init);
    const startedAt = Date.now();
    const requestBody = masked(bodyText(init?.body));
    try {
      const response = await originalFetch(input, init);
      response
        .clone()
        .text()
        .then(
          (text) =>
            onEntry({
              via: "fetch",
              method,
              url,
              status: response.status,
              startedAt,
              durationMs: Date.now() - startedAt,
              requestBody,
              responseBody: masked(text),
            }),
          () => onEntry({ via: "fetch", method, url, status: response.status, startedAt, durationMs: Date.now() - startedAt, requestBody }),
        );
      return response;
    } catch (err) {
      onEntry({ via: "fetch", method, url, status: 0, startedAt, durationMs: Date.now() - startedAt, requestBody, error: String(err) });
      throw err;
    }
  };

  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  const calls = new WeakMap<XMLHttpRequest, { method: string; url: string }>();
  XMLHttpRequest.prototype.open = function (this: XMLHttpRequest, method: string, url: string | URL, ...rest: unknown[]) {
    calls.set(this, { method: method.toUpperCase(), url: new URL(String(url), location.href).href });
    return (open as (...a: unknown[]) => void).call(this, method, url, ...rest);
  } as typeof XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.send = function (this: XMLHttpRequest, body?: Document | XMLHttpRequestBodyInit | null) {
    const call = calls.get(this);
    if (call && !call.url.startsWith(ignorePrefix)) {
      const startedAt = Date.now();
      const requestBody = masked(bodyText(body));
      this.addEventListener("loadend", () => {
        const responseBody = this.responseType === "" || this.responseType === "text" ? masked(this.responseText) : undefined;
        onEntry({
          via: "xhr",
          ...call,
          status: this.status,
          startedAt,
          durationMs: Date.now() - startedAt,
          requestBody,
          responseBody,
          ...(this.status === 0 ? { error: "network error" } : {}),
        });
      });
    }
    return send.call(this, body);
  };
}

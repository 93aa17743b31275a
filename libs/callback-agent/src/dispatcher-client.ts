import type { Registration } from "./reporter.js";
import type { RuleSetDocument } from "./rules/index.js";

export interface DispatcherClientOptions {
  /** Base URL of callback-dispatcher, e.g. http://callback-dispatcher:8086. */
  url: string;
  /** API key (Bearer) or `appId:secret` app credentials (Basic). */
  token?: string;
  env: string;
  timeoutMs: number;
}

/** The two calls an agent makes: fetch the rules (with ETag) and report registrations. */
export interface DispatcherClient {
  /** The rule set, or undefined when it has not changed since the last fetch. */
  fetchRules(): Promise<RuleSetDocument | undefined>;
  register(batch: Registration[]): Promise<void>;
}

export function createDispatcherClient(o: DispatcherClientOptions): DispatcherClient {
  const base = o.url.replace(/\/+$/, "");
  const auth = o.token ? (o.token.includes(":") ? `Basic ${Buffer.from(o.token).toString("base64")}` : `Bearer ${o.token}`) : undefined;
  const headers = (extra: Record<string, string>) => ({ ...(auth ? { authorization: auth } : {}), ...extra });
  let etag: string | undefined;
  return {
    async fetchRules() {
      const res = await fetch(`${base}/_dispatcher/v1/agent/rules?env=${encodeURIComponent(o.env)}`, {
        headers: headers(etag ? { "if-none-match": etag } : {}),
        signal: AbortSignal.timeout(o.timeoutMs),
      });
      if (res.status === 304) return undefined;
      if (!res.ok) throw new Error(`rules: dispatcher answered ${res.status} ${await res.text()}`);
      const doc = (await res.json()) as RuleSetDocument;
      etag = res.headers.get("etag") ?? undefined;
      return doc;
    },
    async register(batch) {
      const res = await fetch(`${base}/_dispatcher/v1/registrations`, {
        method: "POST",
        headers: headers({ "content-type": "application/json" }),
        body: JSON.stringify({ env: o.env, registrations: batch }),
        signal: AbortSignal.timeout(o.timeoutMs),
      });
      if (!res.ok) throw new Error(`registrations: dispatcher answered ${res.status} ${await res.text()}`);
    },
  };
}

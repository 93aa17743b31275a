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

/** How the dispatcher took a batch. Refused registrations are final: sending them again cannot help. */
export interface RegisterOutcome {
  refused: number;
  /** The dispatcher's reason when it refused some: its error code and message. */
  reason?: { code: string; message: string };
}

/** The two calls an agent makes: fetch the rules (with ETag) and report registrations. */
export interface DispatcherClient {
  /** The rule set, or undefined when it has not changed since the last fetch. */
  fetchRules(): Promise<RuleSetDocument | undefined>;
  /** Throws when the dispatcher could not take the batch now (unreachable, 5xx, 408, 429): send it again later. */
  register(batch: Registration[]): Promise<RegisterOutcome>;
}

interface Refusal {
  code: string;
  message: string;
  /** The ids the dispatcher named as the ones it may not store (an id outside the environment's patterns). */
  refused?: Registration[];
}

/** Statuses that say "not now" rather than "not this": the batch is kept and sent again. */
const retryable = (status: number) => status >= 500 || status === 408 || status === 429;

const key = (r: Registration) => `${r.rule}\u0000${r.id}`;

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
      const first = await post(batch);
      if (!first) return { refused: 0 };
      // The dispatcher stores all of a batch or none: without the ids it named, the rest may go through.
      const named = new Set(first.refused?.map(key));
      const rest = batch.filter((r) => !named.has(key(r)));
      if (!named.size || !rest.length || rest.length === batch.length) return { refused: batch.length, reason: first };
      const second = await post(rest);
      return { refused: second ? batch.length : batch.length - rest.length, reason: second ?? first };
    },
  };

  /** Sends one batch: undefined when stored, the refusal when the dispatcher will never take it. */
  async function post(batch: Registration[]): Promise<Refusal | undefined> {
    const res = await fetch(`${base}/_dispatcher/v1/registrations`, {
      method: "POST",
      headers: headers({ "content-type": "application/json" }),
      body: JSON.stringify({ env: o.env, registrations: batch }),
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    const text = await res.text();
    if (res.ok) return undefined;
    if (retryable(res.status)) throw new Error(`registrations: dispatcher answered ${res.status} ${text}`);
    try {
      const body = JSON.parse(text) as { error?: string; message?: string; details?: { refused?: Registration[] } };
      return { code: body.error ?? `http_${res.status}`, message: body.message ?? text, refused: body.details?.refused };
    } catch {
      return { code: `http_${res.status}`, message: text };
    }
  }
}

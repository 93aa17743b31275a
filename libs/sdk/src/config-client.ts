import type { ConfigCenterCaller } from "./contracts.js";
import {
  type BusinessAnswer,
  isGarbage,
  type LockAnswer,
  type Metadata,
  type Parsed,
  parseBusiness,
  parseLock,
  parseMetadata,
  parseRegistration,
  parseSequenceBlock,
  parseToken,
  type RegistrationAnswer,
  type SequenceBlock,
  type TokenAnswer,
} from "./protocol.js";
import { type HttpAnswer, httpCall, type NetFailure } from "./transport/net-thread.js";

/**
 * How a call to config-center failed. `refused`: config-center answered no, with its reason (a 4xx):
 * asking again the same way will not help. `throttled`: 429, ask again after `retryAfterMs`.
 * `unavailable`: unreachable, too slow, a 5xx, or an answer that is not what the protocol says.
 */
export class ConfigCenterError extends Error {
  override name = "ConfigCenterError";
  constructor(
    message: string,
    readonly kind: "refused" | "throttled" | "unavailable",
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** The registration body (config-center's RegistrationBody). */
export interface RegistrationRequest {
  env: string;
  hostName: string;
  ip: string;
  servicePort: number;
  sdkPort?: number;
  startParams?: Record<string, string>;
  labels?: Record<string, string>;
  podName?: string;
  podNamespace?: string;
  appVersion?: string;
  systemDomain?: string;
}

export interface ConfigClientOptions {
  /** config-center's base URL, without a trailing slash. */
  baseUrl: string;
  appId: string;
  secret: string;
  /** Every call gives up after this long, body included. */
  timeoutMs: number;
}

interface Answer {
  status: number;
  body: unknown;
  /** The start of a body that is not JSON, to name it in the error. */
  text: string;
  retryAfter: string | null;
}

/**
 * The SDK's HTTP calls to config-center (its README, "Instance protocol"): each bounded by a
 * timeout, each answer checked against the protocol. Holds the start-up token and gets a new one
 * once when a call is refused with 401 (token expired, credentials changed).
 */
export class ConfigClient implements ConfigCenterCaller {
  private token: string | undefined;
  private renewing: Promise<string> | undefined;
  /** Set once registered: the instance the instance calls are about. */
  instanceId: string | undefined;

  constructor(private readonly o: ConfigClientOptions) {}

  get baseUrl(): string {
    return this.o.baseUrl;
  }

  /** Step 2: app credentials for a token. A refusal (`kind: "refused"`) carries config-center's reason. */
  async issueToken(): Promise<TokenAnswer> {
    const res = await this.send("POST", "/config/v1/token", { appId: this.o.appId, secret: this.o.secret }, undefined);
    const answer = expect(res, "the token request", parseToken);
    this.token = answer.token;
    return answer;
  }

  /** The token for the socket handshake (a new one if there is none yet). */
  async currentToken(): Promise<string> {
    return this.token ?? this.renewToken();
  }

  /** A new token, one request however many callers need it at once. */
  renewToken(): Promise<string> {
    this.renewing ??= this.issueToken()
      .then((t) => t.token)
      .finally(() => {
        this.renewing = undefined;
      });
    return this.renewing;
  }

  /** Step 4. */
  async register(body: RegistrationRequest): Promise<RegistrationAnswer> {
    const answer = expect(await this.authed("POST", "/config/v1/instances", body), "the registration", parseRegistration);
    this.instanceId = answer.instanceId;
    return answer;
  }

  /** Step 8: technical (references resolved), start-up business and governance values at one version. */
  async metadata(): Promise<Metadata> {
    return expect(await this.authed("GET", `${this.instancePath()}/metadata`), "the metadata request", parseMetadata);
  }

  /** Business values by key as this instance sees them (gray values included). */
  async business(keys: string[]): Promise<BusinessAnswer> {
    return expect(await this.authed("POST", `${this.instancePath()}/business`, { keys }), "the business values request", parseBusiness);
  }

  /** Step 11: interfaces, queues and jobs; replaces what config-center knew of this app version. */
  async reportResources(body: unknown): Promise<void> {
    expect(await this.authed("PUT", `${this.instancePath()}/resources`, body), "the resources report", (v) => v);
  }

  async acquireLock(name: string, holder: string, leaseMs: number): Promise<LockAnswer> {
    return expect(await this.authed("POST", "/config/v1/locks/acquire", { name, holder, leaseMs }), `acquiring lock ${name}`, parseLock);
  }

  async releaseLock(name: string, fencingToken: number): Promise<boolean> {
    const released = expect(await this.authed("POST", "/config/v1/locks/release", { name, fencingToken }), `releasing lock ${name}`, (v) =>
      typeof v === "object" && v !== null && typeof (v as { released?: unknown }).released === "boolean"
        ? (v as { released: boolean })
        : { garbage: "not a release answer" },
    );
    return released.released;
  }

  async nextSequenceBlock(name: string): Promise<SequenceBlock> {
    return expect(
      await this.authed("POST", "/config/v1/sequences/next", { name }),
      `the next block of sequence ${name}`,
      parseSequenceBlock,
    );
  }

  /** ConfigCenterCaller: an authenticated call for the SDK's other parts; network failures throw. */
  async request(method: "GET" | "POST" | "PUT", path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await this.authed(method, path, body);
    return { status: res.status, body: res.body };
  }

  private instancePath(): string {
    if (!this.instanceId) throw new ConfigCenterError("this instance is not registered with config-center", "unavailable");
    return `/config/v1/instances/${encodeURIComponent(this.instanceId)}`;
  }

  /** A call with the token; a 401 gets a new token and one more try. */
  private async authed(method: string, path: string, body?: unknown): Promise<Answer> {
    const res = await this.send(method, path, body, await this.currentToken());
    if (res.status !== 401) return res;
    return this.send(method, path, body, await this.renewToken());
  }

  private async send(method: string, path: string, body: unknown, token: string | undefined): Promise<Answer> {
    const headers: Record<string, string> = {};
    if (token) headers["x-config-token"] = token;
    if (body !== undefined) headers["content-type"] = "application/json";
    const what = `${method} ${path}`;
    let res: HttpAnswer;
    try {
      res = await httpCall(`${this.o.baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        timeoutMs: this.o.timeoutMs,
      });
    } catch (err) {
      const e = err as NetFailure;
      const why = e.timedOut ? `did not answer within ${this.o.timeoutMs} ms` : `is unreachable (${e.reason ?? e.message})`;
      throw new ConfigCenterError(`config-center at ${this.o.baseUrl} ${why} (${what})`, "unavailable");
    }
    let parsed: unknown;
    try {
      parsed = res.text ? JSON.parse(res.text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text: res.text.slice(0, 120), retryAfter: res.retryAfter };
  }
}

/** The answer as `parse` reads it, or the ConfigCenterError that says why there is none. */
function expect<T>(res: Answer, what: string, parse: (v: unknown) => Parsed<T>): T {
  if (res.status >= 200 && res.status < 300) {
    const parsed = parse(res.body);
    if (!isGarbage(parsed)) return parsed;
    throw new ConfigCenterError(
      `config-center answered ${what} with something that is ${parsed.garbage}: ${JSON.stringify(res.text)}`,
      "unavailable",
      res.status,
    );
  }
  const reason = messageOf(res);
  if (res.status === 429) {
    const seconds = Number(res.retryAfter);
    const retryAfterMs = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000;
    throw new ConfigCenterError(`config-center throttled ${what}: ${reason}`, "throttled", 429, retryAfterMs);
  }
  if (res.status >= 500 || res.status === 408)
    throw new ConfigCenterError(`config-center could not answer ${what} (${res.status}): ${reason}`, "unavailable", res.status);
  throw new ConfigCenterError(`config-center refused ${what} (${res.status}): ${reason}`, "refused", res.status);
}

/** The platform's error model `{error, message}`, else the start of the body. */
function messageOf(res: Answer): string {
  const b = res.body as { message?: unknown } | undefined;
  return typeof b?.message === "string" ? b.message : res.text || "(empty answer)";
}

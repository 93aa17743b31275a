/** Shared by the governance and adapter tests: rules as config-center pushes them, a log to read, an edge. */
import type { AddressInfo } from "node:net";
import { eventually } from "@opsplane/testing";
import type { AdapterContext } from "../src/adapters/adapter-context.js";
import { RoutesSeen } from "../src/adapters/routes-seen.js";
import type { ConfigValue, EdgeReason, RequestObserver, RequestOutcome, SdkLogger } from "../src/contracts.js";
import { composeEdge } from "../src/edge.js";
import { Governance, type GovernanceOptions } from "../src/governance/governance.js";

let revision = 0;

/** A governance value as config-center pushes it: key `<type>/<code>`. */
export function rule(type: string, code: string, value: unknown): ConfigValue {
  return { kind: "governance", key: `${type}/${code}`, app: "loan", env: "test", category: type, revision: ++revision, value };
}

export function removal(type: string, code: string): ConfigValue {
  return { kind: "governance", key: `${type}/${code}`, app: "loan", env: "test", revision: ++revision, deleted: true };
}

export interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export function recordingLog(): SdkLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** Every request an adapter finished, as the statistics see them. */
export class SeenRequests implements RequestObserver {
  readonly finished: Array<{ code: string; outcome: RequestOutcome; answeredBy?: EdgeReason }> = [];

  requestFinished(code: string, outcome: RequestOutcome, answeredBy?: EdgeReason): void {
    this.finished.push({ code, outcome: { ...outcome }, answeredBy });
  }

  count(code: string): number {
    return this.finished.filter((f) => f.code === code).length;
  }
}

/** Governance behind an edge, as the SDK wires them, with what adapters need. */
export function governed(options: Partial<GovernanceOptions> = {}) {
  const log = recordingLog();
  const governance = new Governance({ log, ...options });
  const seen = new SeenRequests();
  const edge = composeEdge(governance, [seen], log);
  const ctx: AdapterContext = { edge, routes: new RoutesSeen(), log };
  return { governance, log, seen, edge, ctx };
}

export function baseUrl(address: AddressInfo | string | null): string {
  return `http://127.0.0.1:${(address as AddressInfo).port}`;
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** One HTTP request; the body is parsed when it is JSON. */
export async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  const json = (res.headers.get("content-type") ?? "").includes("json") && text !== "";
  return { status: res.status, headers: res.headers, body: json ? JSON.parse(text) : text };
}

/** A promise the test resolves when it chooses. */
export function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

/**
 * Starts a call and waits until it was answered or reached the handler (`handled` rose). Answers
 * `{ pending }` (the call, which may be held in the handler) if it reached the handler, else
 * undefined. (Wrapped: an async function returning the promise itself would wait for it.)
 */
export async function reachesHandler(
  send: () => Promise<Answer>,
  handled: () => number,
): Promise<{ pending: Promise<Answer> } | undefined> {
  const before = handled();
  let answered = false;
  const pending = send().finally(() => {
    answered = true;
  });
  await eventually("the call answered or in the handler", () => answered || handled() > before);
  return handled() > before ? { pending } : undefined;
}

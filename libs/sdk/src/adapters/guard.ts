import { setTimeout as sleep } from "node:timers/promises";
import type { Edge, EdgeReason, EdgeRequest, EdgeResponse } from "../contracts.js";
import { checkCode } from "./interface-code.js";

/** A guarded call governance refused: the reason, and the status an HTTP interface would have answered. */
export class GovernanceRejection extends Error {
  override readonly name = "GovernanceRejection";

  constructor(
    readonly code: string,
    readonly reason: EdgeReason,
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export interface GuardOptions<A extends unknown[]> {
  /** Who calls, for route conditions `by: "caller"`. */
  caller?: string;
  /** Live parameters of a call, for route conditions `by: "param"` (the first argument's fields are tried too). */
  params?: (...args: A) => Record<string, string>;
}

export type Guard = <A extends unknown[], R>(
  code: string,
  fn: (...args: A) => R | Promise<R>,
  options?: GuardOptions<A>,
) => (...args: A) => Promise<Awaited<R>>;

const noHeaders = Object.freeze({});

/**
 * `sdk.guard(code, fn)`: the same gate around a queue consumer, a job or any async call. The
 * guarded function runs only if governance lets the call through; a throw is a failure for the
 * breaker, a slow call one past its `timeoutMs`. A baffle's answer (status below 400) is returned
 * instead of calling `fn`: its JSON body parsed, else its text. Every other refusal rejects with a
 * GovernanceRejection naming the reason.
 */
export function createGuard(edge: Edge): Guard {
  const scratch: EdgeRequest = {
    code: "",
    method: "CALL",
    path: "",
    headers: noHeaders,
    caller: undefined,
    params: undefined,
    body: undefined,
  };
  return <A extends unknown[], R>(code: string, fn: (...args: A) => R | Promise<R>, options: GuardOptions<A> = {}) => {
    checkCode(code, "sdk.guard()");
    return async (...args: A): Promise<Awaited<R>> => {
      scratch.code = code;
      scratch.path = code;
      scratch.caller = options.caller;
      scratch.params = options.params?.(...args);
      scratch.body = args[0];
      const arrivedAt = edge.now();
      const d = edge.enter(scratch, arrivedAt);
      scratch.params = scratch.body = undefined;
      if (d.action === "respond") return (await answer(code, d.reason, await d.response)) as Awaited<R>;
      if (d.action !== "proceed") throw new Error(`governance deferred ${code}, which only an HTTP adapter can do`);
      let result: Awaited<R>;
      try {
        result = await fn(...args);
      } catch (err) {
        edge.finish(d, code, arrivedAt, 500, true);
        throw err;
      }
      edge.finish(d, code, arrivedAt, 200, false);
      return result;
    };
  };
}

async function answer(code: string, reason: EdgeReason, r: EdgeResponse): Promise<unknown> {
  if (r.delayMs) await sleep(r.delayMs);
  const text = r.body.toString();
  const json = (r.headers["content-type"] ?? "").includes("json");
  let body: unknown = text;
  if (json && text !== "")
    try {
      body = JSON.parse(text);
    } catch {
      // A baffle may declare JSON and send text: return the text.
    }
  if (reason === "baffle" && r.statusCode < 400) return body;
  const message =
    typeof (body as { message?: unknown })?.message === "string" ? (body as { message: string }).message : `${code}: ${reason}`;
  throw new GovernanceRejection(code, reason, r.statusCode, message);
}

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Edge, EdgeCall, EdgeRequest, SdkLogger } from "../contracts.js";
import { type AnswerSink, EdgeWriter } from "./edge-writer.js";

/** Marks a request some adapter already governs, so no other adapter governs it again. */
export const governed = Symbol.for("@opsplane/sdk.governed");
/** The call to finish when the response closes, when it arrived, its code and the gate that let it through. */
const call = Symbol("@opsplane/sdk.call");
const arrived = Symbol("@opsplane/sdk.arrived");
const callCode = Symbol("@opsplane/sdk.code");
const callGate = Symbol("@opsplane/sdk.gate");

type GovernedResponse = ServerResponse & {
  [call]?: EdgeCall | undefined;
  [arrived]?: number;
  [callCode]?: string;
  [callGate]?: HttpGate;
};
export type GovernedRequest = IncomingMessage & { [governed]?: true };

/**
 * The gate for adapters that hold a raw request and response (node:http, express, auto mode). One
 * request object is reused for every call: `enter` keeps no reference to it.
 */
export class HttpGate {
  private readonly scratch: EdgeRequest = {
    code: "",
    method: "",
    path: "",
    headers: {},
    caller: undefined,
    params: undefined,
    query: undefined,
    body: undefined,
    bodyFollows: false,
  };

  private readonly writer: EdgeWriter;

  constructor(
    readonly edge: Edge,
    log: SdkLogger,
  ) {
    this.writer = new EdgeWriter(log);
  }

  /**
   * Asks the edge about a request. True: let the handler run (the call finishes when the response
   * closes). False: the edge answered (or is answering) the request itself.
   */
  pass(
    req: GovernedRequest,
    res: ServerResponse,
    code: string,
    path: string,
    query: EdgeRequest["query"],
    params?: Record<string, string>,
    body?: unknown,
  ): boolean {
    req[governed] = true;
    const r = this.scratch;
    r.code = code;
    r.method = req.method ?? "GET";
    r.path = path;
    r.headers = req.headers;
    r.query = query;
    r.params = params;
    r.body = body;
    const arrivedAt = this.edge.now();
    const d = this.edge.enter(r, arrivedAt);
    r.headers = {};
    r.query = r.params = r.body = undefined;
    if (d.action === "proceed") {
      const g = res as GovernedResponse;
      g[call] = d;
      g[arrived] = arrivedAt;
      g[callCode] = code;
      g[callGate] = this;
      res.on("close", finishOnClose);
      return true;
    }
    // `defer` cannot happen: bodyFollows is false.
    if (d.action === "respond") this.writer.write(rawSink(res), d.response);
    return false;
  }
}

/** `close` comes after the response was sent, or when the client went away before that (a failure). */
function finishOnClose(this: GovernedResponse): void {
  const d = this[call];
  if (d === undefined) return;
  this[call] = undefined;
  this[callGate]!.edge.finish(d, this[callCode]!, this[arrived]!, this.statusCode, this.statusCode >= 500 || !this.writableFinished);
}

function rawSink(res: ServerResponse): AnswerSink {
  return {
    closed: () => res.headersSent || res.destroyed,
    write(r) {
      res.writeHead(r.statusCode, r.headers);
      res.end(r.body);
    },
  };
}

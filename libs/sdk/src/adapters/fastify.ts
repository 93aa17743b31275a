import diagnostics from "node:diagnostics_channel";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Edge, EdgeCall, EdgeRequest } from "../contracts.js";
import { type AdapterContext, pathOf } from "./adapter-context.js";
import { type AnswerSink, EdgeWriter } from "./edge-writer.js";
import { checkCode, routeCode } from "./interface-code.js";

/*
 * Fastify is the app's, not the SDK's: these are the few parts of its API the adapter uses, so the
 * SDK's types do not depend on a fastify version.
 */
type Hook = (...args: never[]) => unknown;

/** A route as fastify's `onRoute` hook sees it; `config.opsplane` is the app's per-route setting. */
export interface FastifyRouteLike {
  method: string | string[];
  url: string;
  config?: { opsplane?: { code?: string } | false } & Record<string, unknown>;
  handler: Hook;
  onRequest?: Hook | Hook[];
}

export interface FastifyLike {
  addHook(name: "onRoute", hook: (route: FastifyRouteLike) => void): unknown;
  decorateRequest(name: string, value: null | number): unknown;
  hasRequestDecorator(name: string): boolean;
}

interface RequestLike {
  raw: IncomingMessage;
  url: string;
  params: unknown;
  query: unknown;
  body: unknown;
  /** The call under way: the edge's, or `deferred` until the handler is reached. */
  opsplaneCall: EdgeCall | null;
  /** When it arrived, on the edge's clock. */
  opsplaneArrivedAt: number;
  /** The route gate that let it through. */
  opsplaneGate: RouteGate | null;
}

interface ReplyLike {
  statusCode: number;
  request: RequestLike;
  /** A ServerResponse, or an Http2ServerResponse. */
  raw: { headersSent: boolean; destroyed: boolean; writableEnded: boolean; once(event: "close", listener: () => void): unknown };
  code(status: number): ReplyLike;
  headers(headers: Record<string, string>): ReplyLike;
  send(body?: unknown): ReplyLike;
}

type Done = (err?: Error) => void;

/** A fastify plugin callback that applies to the app it is registered on (not an encapsulated copy). */
export type OpsplaneFastifyPlugin = (instance: FastifyLike, options: unknown, done: Done) => void;

const attached = Symbol.for("@opsplane/sdk.fastify");
const hookedRoute = Symbol.for("@opsplane/sdk.fastify-route");
const callField = "opsplaneCall";
const arrivedField = "opsplaneArrivedAt";
const gateField = "opsplaneGate";

/** Marks a request whose gate waits for its body: it is gated just before its handler. */
const deferred: EdgeCall = Object.freeze({ action: "proceed", finish() {} });

/**
 * `await app.register(sdk.fastify())`, before the app declares its routes: every route then passes
 * the governance gate. Each route gets an onRequest hook when it is declared, with its code in it,
 * so nothing is looked up per request; it gates before the body is read, so refused requests cost
 * little. The call ends when its response has finished (5xx is a failure, thrown errors arrive as
 * 500s), heard from Node's `http.server.response.finish` diagnostics channel: one subscriber per
 * process, no onResponse hook, whose runner would allocate for every request. A rule that needs
 * the body defers the gate to just before the route's handler, which the plugin wraps (a field
 * test per request; no preHandler hook, for the same reason). A call whose client goes away is
 * finished when its connection closes: one `close` listener per connection, not per request. The
 * plugin skips fastify's encapsulation (`Symbol.for("skip-override")`, as fastify-plugin does), so
 * it sees routes declared in other plugins. Route code: `config: { opsplane: { code } }`, else
 * `routeCode` of the method and pattern; `config: { opsplane: false }` leaves a route ungoverned.
 */
export function fastifyPlugin(ctx: AdapterContext): OpsplaneFastifyPlugin {
  const plugin: OpsplaneFastifyPlugin = (instance, _options, done) => {
    try {
      attachFastify(ctx, instance);
      done();
    } catch (err) {
      done(err as Error);
    }
  };
  return Object.assign(plugin, { [Symbol.for("skip-override")]: true, [Symbol.for("fastify.display-name")]: "@opsplane/sdk" });
}

/** Hooks every route declared on `app` from now on; false when it was already hooked. */
export function attachFastify(ctx: AdapterContext, app: FastifyLike): boolean {
  const marked = app as FastifyLike & { [attached]?: true };
  if (marked[attached]) return false;
  marked[attached] = true;
  if (!app.hasRequestDecorator(callField)) app.decorateRequest(callField, null);
  if (!app.hasRequestDecorator(arrivedField)) app.decorateRequest(arrivedField, 0);
  if (!app.hasRequestDecorator(gateField)) app.decorateRequest(gateField, null);
  const writer = new EdgeWriter(ctx.log);
  app.addHook("onRoute", (route) => hookRoute(ctx, writer, route));
  if (!finishing) {
    diagnostics.subscribe("http.server.response.finish", responseFinished);
    finishing = true;
  }
  return true;
}

function hookRoute(ctx: AdapterContext, writer: EdgeWriter, route: FastifyRouteLike): void {
  // An encapsulated context inherits the hook and may add its own: a route is hooked once.
  const r = route as FastifyRouteLike & { [hookedRoute]?: true };
  if (r[hookedRoute]) return;
  r[hookedRoute] = true;
  const own = route.config?.opsplane;
  if (own === false) return;
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const code =
    own?.code !== undefined ? checkCode(own.code, `fastify route ${methods.join(",")} ${route.url}`) : routeCode(route.method, route.url);
  // fastify adds a HEAD route for each GET route; it shares the GET route's code.
  if (!(methods.length === 1 && methods[0] === "HEAD")) ctx.routes.add({ code, method: methods.join(","), path: route.url });
  const hooks = routeHooks(ctx, writer, code, route.handler);
  route.onRequest = [hooks.onRequest, ...list(route.onRequest)];
  route.handler = hooks.handler;
}

function list(hooks: Hook | Hook[] | undefined): Hook[] {
  return hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks];
}

/**
 * The request as a route shows it to governance, one per route, reused for every call (`enter`
 * keeps no reference to it): its fields are read from the fastify request only when a rule asks
 * (a route condition, a baffle), so a request through a route without them costs one store.
 */
class RouteRequest implements EdgeRequest {
  request: RequestLike | undefined = undefined;
  bodyFollows = true;

  constructor(readonly code: string) {}

  get method(): string {
    return this.request!.raw.method ?? "GET";
  }

  get path(): string {
    return pathOf(this.request!.url);
  }

  get headers(): IncomingMessage["headers"] {
    return this.request!.raw.headers;
  }

  get params(): Record<string, string> {
    return this.request!.params as Record<string, string>;
  }

  get query(): Record<string, unknown> {
    return this.request!.query as Record<string, unknown>;
  }

  get body(): unknown {
    return this.request!.body;
  }
}

/** A route's gate: its code built in. */
class RouteGate {
  private readonly shown: RouteRequest;

  constructor(
    private readonly edge: Edge,
    private readonly writer: EdgeWriter,
    private readonly code: string,
  ) {
    this.shown = new RouteRequest(code);
  }

  /** True: go on with the request. False: the edge is answering it. */
  pass(request: RequestLike, reply: ReplyLike, bodyFollows: boolean): boolean {
    const shown = this.shown;
    shown.request = request;
    shown.bodyFollows = bodyFollows;
    const arrivedAt = bodyFollows ? this.edge.now() : request.opsplaneArrivedAt;
    const d = this.edge.enter(shown, arrivedAt);
    shown.request = undefined;
    if (d.action === "respond") {
      request.opsplaneCall = null;
      this.writer.write(replySink(reply), d.response);
      return false;
    }
    request.opsplaneArrivedAt = arrivedAt;
    request.opsplaneGate = this;
    if (d.action === "defer") request.opsplaneCall = deferred;
    else {
      request.opsplaneCall = d;
      watch(reply);
    }
    return true;
  }

  /** Ends the request's call, once: when its response finished, or when its client went away first. */
  end(reply: ReplyLike, statusCode: number, failed: boolean): void {
    const request = reply.request;
    const call = request.opsplaneCall;
    if (call === null || call === deferred) return;
    request.opsplaneCall = null;
    unwatchConnection(reply);
    this.edge.finish(call, this.code, request.opsplaneArrivedAt, statusCode, failed);
  }
}

function routeHooks(ctx: AdapterContext, writer: EdgeWriter, code: string, handler: Hook) {
  const gate = new RouteGate(ctx.edge, writer, code);
  return {
    onRequest(request: RequestLike, reply: ReplyLike, done: Done): void {
      if (gate.pass(request, reply, true)) done();
    },
    /** The route's handler; a request whose gate waited for its body is gated first. */
    handler(this: unknown, request: RequestLike, reply: ReplyLike): unknown {
      if (request.opsplaneCall === deferred && !gate.pass(request, reply, false)) return undefined;
      return (handler as (this: unknown, request: RequestLike, reply: ReplyLike) => unknown).call(this, request, reply);
    },
  };
}

/**
 * The calls under way on an HTTP/1 connection: each is finished when Node publishes that its
 * response finished, or as aborted (499, nginx's "client closed request") if the connection closes
 * first. One array and one `close` listener per connection: a keep-alive connection's requests add
 * none. An HTTP/2 stream has no connection of its own and Node publishes nothing for it: its
 * response's `close` (emitted when the stream closes, answered or cancelled) finishes the call.
 */
const inFlight = Symbol("@opsplane/sdk.fastify-in-flight");
type Connection = Socket & { [inFlight]?: ReplyLike[] };

/** Whether this module listens to `http.server.response.finish` (from the first app on, for the process's life). */
let finishing = false;

function connectionOf(raw: IncomingMessage): Connection | undefined {
  return raw.httpVersionMajor === 2 ? undefined : raw.socket;
}

function watch(reply: ReplyLike): void {
  const connection = connectionOf(reply.request.raw);
  if (connection === undefined) {
    reply.raw.once("close", () => streamClosed(reply));
    return;
  }
  let calls = connection[inFlight];
  if (calls === undefined) {
    calls = connection[inFlight] = [];
    connection.once("close", connectionClosed);
  }
  calls.push(reply);
}

function unwatchConnection(reply: ReplyLike): void {
  const calls = connectionOf(reply.request.raw)?.[inFlight];
  if (calls === undefined) return;
  if (calls[calls.length - 1] === reply) calls.pop();
  else {
    const i = calls.indexOf(reply);
    if (i >= 0) calls.splice(i, 1);
  }
}

/** Node's message for every finished HTTP/1 response of every server in the process; only watched connections have calls. */
function responseFinished(message: unknown): void {
  const { response, socket } = message as { response: ServerResponse; socket: Connection };
  const calls = socket[inFlight];
  if (calls === undefined) return;
  for (let i = calls.length - 1; i >= 0; i--) {
    const reply = calls[i]!;
    if ((reply.raw as unknown) !== response) continue;
    const status = response.statusCode;
    reply.request.opsplaneGate?.end(reply, status, status >= 500);
    return;
  }
}

function connectionClosed(this: Connection): void {
  const calls = this[inFlight];
  if (calls === undefined) return;
  this[inFlight] = [];
  for (const reply of calls) reply.request.opsplaneGate?.end(reply, 499, true);
}

/** An HTTP/2 stream closed: answered if its response was ended, else its client cancelled it. */
function streamClosed(reply: ReplyLike): void {
  const answered = reply.raw.writableEnded;
  const status = answered ? reply.statusCode : 499;
  reply.request.opsplaneGate?.end(reply, status, !answered || status >= 500);
}

function replySink(reply: ReplyLike): AnswerSink {
  return {
    closed: () => reply.raw.headersSent || reply.raw.destroyed,
    write(r) {
      reply.code(r.statusCode).headers(r.headers).send(r.body);
    },
  };
}

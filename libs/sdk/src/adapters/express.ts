import type { IncomingMessage, ServerResponse } from "node:http";
import { type AdapterContext, pathOf, queryOf } from "./adapter-context.js";
import { type GovernedRequest, governed, HttpGate } from "./http-gate.js";
import { checkCode, idSegment, PathCodes, routeCode } from "./interface-code.js";
import type { SeenInterface } from "./routes-seen.js";

/** The parts of an express request the adapter reads (express is the app's, not the SDK's). */
export type ExpressRequestLike = IncomingMessage & {
  route?: { path: unknown };
  baseUrl?: string;
  originalUrl?: string;
  params?: Record<string, string>;
  body?: unknown;
};
export type ExpressMiddleware = (req: ExpressRequestLike, res: ServerResponse, next: (err?: unknown) => void) => void;

/** `app.use(sdk.express())`, or per route `sdk.express.route(code?)`. */
export interface ExpressAdapter {
  (): ExpressMiddleware;
  route(code?: string): ExpressMiddleware;
  /**
   * Reports the routes of `app` that carry `sdk.express.route(…)` now, instead of at their first
   * request: call it once the routes are declared. Answers how many it found.
   */
  discover(app: ExpressAppLike): number;
}

/** The parts of an express app (4 or 5) and its router stack `discover` reads. */
export interface ExpressAppLike {
  router?: unknown;
  _router?: unknown;
}
interface LayerLike {
  name?: string;
  /** express 5's mount or route path as declared. */
  rawPath?: unknown;
  handle?: { stack?: unknown };
  route?: { path?: unknown; methods?: Record<string, boolean>; stack?: Array<{ handle?: unknown }> };
}

/** Set on each `sdk.express.route()` middleware: the code it was given, if any. */
const perRoute = Symbol.for("@opsplane/sdk.express-route");
type MarkedMiddleware = ExpressMiddleware & { [perRoute]?: { code: string | undefined } };

/**
 * Express only knows a request's route once its router matched it, after app-level middleware
 * ran. So there are two ways in, and a request is governed by the first it meets, never by both:
 * - `app.use(sdk.express())`: one line, every request, code from the method and the path with ids
 *   as `id` (`GET /loans/7` → `get.loans.id`, the code `GET /loans/:id` gets everywhere else);
 * - `app.post("/loans/:id", sdk.express.route("loan.repay"), handler)`: per route, an explicit
 *   code, or without one the code of the route's own pattern (`post.loans.id`).
 * Put a body parser before the middleware if route conditions test body fields.
 */
export function expressAdapter(ctx: AdapterContext): ExpressAdapter {
  const gate = new HttpGate(ctx.edge, ctx.log);
  const paths = new PathCodes();
  const derived = new WeakMap<object, Map<string, string>>();

  const pass = (req: ExpressRequestLike, res: ServerResponse, next: (err?: unknown) => void, code: string): void => {
    const url = req.originalUrl ?? req.url ?? "/";
    if (gate.pass(req, res, code, pathOf(url), queryOf(url), req.params, req.body)) next();
  };

  const appLevel: ExpressMiddleware = (req, res, next) => {
    if ((req as GovernedRequest)[governed]) return next();
    const method = req.method ?? "GET";
    const code = paths.code(method, pathOf(req.originalUrl ?? req.url ?? "/"));
    if (!ctx.routes.has(code)) ctx.routes.add({ code, method, path: paths.pattern(code) });
    pass(req, res, next, code);
  };

  /** The code of the route a request matched (cached per route and mount path). */
  const routeCodeOf = (req: ExpressRequestLike): string => {
    const route = req.route;
    if (!route) return paths.code(req.method ?? "GET", pathOf(req.originalUrl ?? req.url ?? "/"));
    let byBase = derived.get(route);
    if (!byBase) {
      byBase = new Map();
      derived.set(route, byBase);
    }
    const base = req.baseUrl ?? "";
    let code = byBase.get(base);
    if (code === undefined) {
      const pattern = `${mountPattern(base)}${typeof route.path === "string" ? route.path : "/route"}`;
      code = routeCode(req.method ?? "GET", pattern);
      if (byBase.size < 100) byBase.set(base, code);
      ctx.routes.add({ code, method: req.method, path: pattern });
    }
    return code;
  };

  const adapter = (() => appLevel) as ExpressAdapter;
  adapter.discover = (app) => {
    const found: SeenInterface[] = [];
    collectRoutes((app.router ?? app._router) as { stack?: unknown } | undefined, "", found);
    for (const seen of found) ctx.routes.add(seen);
    return found.length;
  };
  adapter.route = (code?: string): ExpressMiddleware => {
    if (code !== undefined) checkCode(code, "sdk.express.route()");
    let noted = false;
    const middleware: MarkedMiddleware = (req, res, next) => {
      if ((req as GovernedRequest)[governed]) return next();
      if (code === undefined) return pass(req, res, next, routeCodeOf(req));
      if (!noted) {
        noted = true;
        ctx.routes.add({
          code,
          method: req.method,
          path: `${req.baseUrl ?? ""}${typeof req.route?.path === "string" ? req.route.path : ""}`,
        });
      }
      pass(req, res, next, code);
    };
    middleware[perRoute] = { code };
    return middleware;
  };
  return adapter;
}

/**
 * The routes under a router carrying a per-route middleware, with their codes: the explicit one,
 * else the code of the route's pattern under its mount path. A mount path with parameters (or one
 * express 4 does not keep) leaves derived codes to the first request, where the path is known.
 */
function collectRoutes(router: { stack?: unknown } | undefined, mount: string | undefined, found: SeenInterface[]): void {
  if (!Array.isArray(router?.stack)) return;
  for (const layer of router.stack as LayerLike[]) {
    const route = layer.route;
    if (!route) {
      if (layer.name === "router" && layer.handle) {
        const raw = layer.rawPath;
        const static_ = mount !== undefined && typeof raw === "string" && !/[:*?(]/.test(raw);
        collectRoutes(layer.handle, static_ ? `${mount}${raw === "/" ? "" : raw}` : undefined, found);
      }
      continue;
    }
    const marks = (route.stack ?? []).map((l) => (l.handle as MarkedMiddleware | undefined)?.[perRoute]).filter((m) => m !== undefined);
    if (marks.length === 0) continue;
    const own = typeof route.path === "string" ? route.path : undefined;
    const path = mount !== undefined && own !== undefined ? `${mount}${own}` : undefined;
    // `app.all` lists every method: no single method to report.
    const methods = Object.keys(route.methods ?? {}).filter((m) => m !== "_all" && !(m === "head" && route.methods?.get));
    const all = route.methods?._all === true || methods.length > 8;
    const { code } = marks[0]!;
    if (code !== undefined)
      found.push({ code, ...(all ? {} : { method: methods.map((m) => m.toUpperCase()).join(",") }), ...(path ? { path } : {}) });
    else if (path !== undefined && !all)
      for (const m of methods) found.push({ code: routeCode(m.toUpperCase(), path), method: m.toUpperCase(), path });
  }
}

/** A router's mount path as a pattern: its id segments (the values of mount parameters) become `:id`. */
function mountPattern(base: string): string {
  let pattern = "";
  for (const segment of base.split("/")) if (segment !== "") pattern += `/${idSegment.test(segment) ? ":id" : segment}`;
  return pattern;
}

import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { type AdapterContext, pathOf, queryOf } from "./adapter-context.js";
import { type GovernedRequest, governed, HttpGate } from "./http-gate.js";
import { checkCode, PathCodes } from "./interface-code.js";

export interface HttpWrapOptions {
  /** The interface code of a request. Default: from the method and path, ids as `id` (`GET /loans/7` → `get.loans.id`). */
  code?: (req: IncomingMessage) => string;
}

/**
 * Wraps a node:http request listener (`http.createServer(sdk.http(handler))`): each request passes
 * the governance gate first, and its call finishes when the response closes. A request another
 * adapter already governs (auto mode) goes straight to the handler. A `code` function that throws
 * or answers an invalid code is logged once; the request then gets the code from its path.
 */
export function wrapHttpHandler(ctx: AdapterContext, handler: RequestListener, options: HttpWrapOptions = {}): RequestListener {
  const gate = new HttpGate(ctx.edge, ctx.log);
  const paths = new PathCodes();
  const codeOf = options.code;
  let codeFailureLogged = false;

  const pathCode = (method: string, path: string): string => {
    const code = paths.code(method, path);
    if (!ctx.routes.has(code)) ctx.routes.add({ code, method, path: paths.pattern(code) });
    return code;
  };
  const ownCode = (req: IncomingMessage, method: string, path: string): string => {
    try {
      const code = codeOf!(req);
      // A code already noted was checked then.
      if (!ctx.routes.has(code)) ctx.routes.add({ code: checkCode(code, "sdk.http code()"), method });
      return code;
    } catch (err) {
      if (!codeFailureLogged) {
        codeFailureLogged = true;
        ctx.log.error(`${(err as Error).message}; requests get the code of their path instead`);
      }
      return pathCode(method, path);
    }
  };

  return function governedListener(this: unknown, req: IncomingMessage, res: ServerResponse) {
    if ((req as GovernedRequest)[governed]) return handler.call(this, req, res);
    const url = req.url ?? "/";
    const path = pathOf(url);
    const method = req.method ?? "GET";
    const code = codeOf ? ownCode(req, method, path) : pathCode(method, path);
    if (gate.pass(req, res, code, path, queryOf(url))) handler.call(this, req, res);
  } as RequestListener;
}

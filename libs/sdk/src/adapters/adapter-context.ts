import type { Edge, SdkLogger } from "../contracts.js";
import type { RoutesSeen } from "./routes-seen.js";

/** What every adapter is built with: the edge to ask, where to note the routes it sees, where to log. */
export interface AdapterContext {
  edge: Edge;
  routes: RoutesSeen;
  log: SdkLogger;
}

/** The path of a request target, without its query string. */
export function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

/** The raw query string of a request target (no `?`), or "". */
export function queryOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? "" : url.slice(q + 1);
}

import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { App } from "./app.js";
import { ConfigError } from "./config.js";
import { AppError, forbidden, unauthorized } from "./errors.js";

export type Role = "viewer" | "operator" | "admin";
const roleRank: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/** Who is calling: a person or tool with an API key, or a managed app with its credentials. */
export type Principal = { kind: "key"; id: string; role: Role } | { kind: "app"; id: string };

/**
 * What a route needs. "public": no credentials (health, metrics, third-party
 * ingress). Otherwise API keys need at least `role`, and app credentials are
 * accepted only when `apps` is true.
 */
export type Access = "public" | { role?: Role; apps?: boolean };

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

export const sha256Hex = (secret: string) => createHash("sha256").update(secret).digest("hex");

export interface Authenticator {
  /** Reads the Authorization header: `Bearer <api key>` or `Basic base64(appId:secret)`. Throws 401 on unknown credentials. */
  authenticate(authorization: string | undefined): Principal | undefined;
}

/**
 * Keys and app secrets are configured as SHA-256 hashes (a Kubernetes Secret
 * holds `id:role:hash` lines), so neither the config nor a memory dump reveals
 * a usable credential. Keys are long random tokens, so a fast hash is enough.
 */
export function createAuthenticator(apiKeys: string, appCredentials: string): Authenticator {
  const keysByHash = new Map<string, { id: string; role: Role }>();
  splitList(apiKeys).forEach((entry, i) => {
    const [id, role, hash] = entry.split(":");
    if (!id || !hash || !(role && role in roleRank) || !/^[0-9a-f]{64}$/.test(hash))
      throw badEntry("AUTH_API_KEYS", entry, i, "id:viewer|operator|admin:sha256hex");
    keysByHash.set(hash, { id, role: role as Role });
  });
  const appHashes = new Map<string, Buffer>();
  splitList(appCredentials).forEach((entry, i) => {
    const [id, hash] = entry.split(":");
    if (!id || !hash || !/^[0-9a-f]{64}$/.test(hash)) throw badEntry("AUTH_APP_CREDENTIALS", entry, i, "appId:sha256hex");
    appHashes.set(id, Buffer.from(hash, "hex"));
  });
  return {
    authenticate(header) {
      if (!header) return undefined;
      const [scheme, value] = header.split(" ", 2);
      if (scheme?.toLowerCase() === "bearer" && value) {
        const key = keysByHash.get(sha256Hex(value));
        if (!key) throw unauthorized("unknown API key");
        return { kind: "key", id: key.id, role: key.role };
      }
      if (scheme?.toLowerCase() === "basic" && value) {
        const decoded = Buffer.from(value, "base64").toString();
        const colon = decoded.indexOf(":");
        const appId = decoded.slice(0, colon);
        const expected = appHashes.get(appId);
        const given = Buffer.from(sha256Hex(decoded.slice(colon + 1)), "hex");
        if (colon < 0 || !expected || !timingSafeEqual(expected, given)) throw unauthorized("unknown app credentials");
        return { kind: "app", id: appId };
      }
      throw unauthorized("Authorization must be 'Bearer <api key>' or 'Basic <app credentials>'");
    },
  };
}

/** Throws 401/403 unless `principal` satisfies `access`. */
export function authorize(principal: Principal | undefined, access: Exclude<Access, "public">): void {
  if (!principal) throw unauthorized();
  if (principal.kind === "app") {
    if (!access.apps) throw forbidden(`app ${principal.id} may not call this API`);
    return;
  }
  const need = access.role ?? "viewer";
  if (roleRank[principal.role] < roleRank[need]) throw forbidden(`role ${principal.role} may not call this API; it needs ${need}`);
}

/** Default for routes that say nothing: reads need a viewer, changes an operator. */
export function defaultAccess(method: string): Exclude<Access, "public"> {
  return method === "GET" || method === "HEAD" ? { role: "viewer" } : { role: "operator" };
}

export const actorOf = (p: Principal | undefined) => (p ? `${p.kind}:${p.id}` : "anonymous");

/**
 * Authenticates every request and authorises the REST routes by their
 * `config.access`. Connect RPCs are authorised by the RPC interceptor instead,
 * since their routes are registered by the Connect plugin. Each refusal is
 * handed to `onDenied` for the audit trail.
 */
export function installAuth(
  app: App,
  authenticator: Authenticator,
  isRpcRoute: (url: string | undefined) => boolean,
  onDenied: (req: FastifyRequest, err: AppError) => void,
): void {
  app.addHook("onRequest", async (req) => {
    const access = req.routeOptions.config?.access;
    try {
      // Public routes take third-party traffic whose Authorization header is not ours (e.g. callbacks): never refuse it.
      if (access === "public") return;
      req.principal = authenticator.authenticate(req.headers.authorization);
      if (isRpcRoute(req.routeOptions.url) || req.is404) return;
      authorize(req.principal, access ?? defaultAccess(req.method));
    } catch (err) {
      if (err instanceof AppError) onDenied(req, err);
      throw err;
    }
  });
}

/**
 * A configuration error (one line at start-up, like any bad variable). The entry is named by
 * its id only when it has one: an entry without a colon may be a raw key pasted by mistake.
 */
function badEntry(variable: string, entry: string, index: number, shape: string): ConfigError {
  const which = entry.includes(":") ? `entry "${entry.slice(0, entry.indexOf(":"))}"` : `entry ${index + 1}`;
  return new ConfigError(`invalid environment variable ${variable}: ${which} must be ${shape}`);
}

function splitList(s: string): string[] {
  return s
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean);
}

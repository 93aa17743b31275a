import { type DescService, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createContextKey, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { type Access, authorize, type Principal } from "./auth.js";
import { type AppError, asAppError, badRequest, internalErrorMessage, toConnectError } from "./errors.js";
import { unacceptableInput } from "./input-guard.js";
import { undecodableAsInvalid } from "./rpc-undecodable.js";

/** The caller, as the fastify auth hook found it; read it in an RPC handler with `ctx.values.get(principalKey)`. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });
/** The caller's address, as fastify's `req.ip` gives it to the REST view. */
export const clientAddressKey = createContextKey<string>("", { description: "client address" });

export interface RpcService<S extends DescService = DescService> {
  service: S;
  impl: Partial<ServiceImpl<S>>;
  /** Access for every method unless `methods` says otherwise. */
  access: Access;
  /** Per-method access by method name (e.g. `{ getServiceInfo: "public" }`). */
  methods?: Record<string, Access>;
  /**
   * Methods (by name) that take text PostgreSQL cannot store (NUL, lone surrogates) in their input, as a
   * REST route's `config.allowUnstorable`: they never store it, or store it made storable themselves.
   */
  allowUnstorable?: string[];
}

/** Declares an RPC service with its access rules, keeping the impl typed against the service. */
export function rpcService<S extends DescService>(def: RpcService<S>): RpcService {
  return def as unknown as RpcService;
}

/**
 * Authorises each RPC by its declared access, refuses input no handler could store (NUL or a lone surrogate unless the
 * method allows it, non-finite numbers: invalid_argument naming the field), and answers failures as
 * REST routes do: AppErrors, dependency outages (unavailable, with Retry-After) and values PostgreSQL
 * refused (invalid_argument) get their code; anything else is internal, with the same message as over REST.
 */
export function rpcInterceptor(
  services: RpcService[],
  onDenied: (method: string, principal: Principal | undefined, err: AppError, requestId: string) => void,
  onInternal: (method: string, err: unknown) => void,
): Interceptor {
  const accessByPath = new Map<string, Access>();
  const unstorableAllowed = new Set<string>();
  for (const s of services) {
    for (const m of s.service.methods) {
      const path = `/${s.service.typeName}/${m.name}`;
      accessByPath.set(path, s.methods?.[m.localName] ?? s.access);
      if (s.allowUnstorable?.includes(m.localName)) unstorableAllowed.add(path);
    }
  }
  return (next) => async (req) => {
    const path = `/${req.service.typeName}/${req.method.name}`;
    const access = accessByPath.get(path) ?? { role: "admin" };
    try {
      if (access !== "public") authorize(req.contextValues.get(principalKey), access);
      const allowUnstorable = unstorableAllowed.has(path);
      if (!req.stream) {
        // Looked for in the request as the caller's JSON has it: named so (`value/hosts/1`, not a decoded
        // google.protobuf.Value's `kind/value/fields/…`), a `constructor.prototype` seen, nesting bounded
        // as on REST (Connect's own reads stop at 100 levels). The decoded message is walked too, for what
        // JSON spells as text (a float's "NaN"); it nests several levels per JSON level, so not for depth.
        const reason =
          unacceptableInput(toJson(req.method.input, req.message), "", { allowUnstorable }) ??
          unacceptableInput(req.message, "", { allowUnstorable, maxDepth: Number.POSITIVE_INFINITY });
        if (reason) throw badRequest(reason);
      }
      return await next(req);
    } catch (err) {
      const known = asAppError(err);
      if (known) {
        if (known.status === 401 || known.status === 403)
          onDenied(path, req.contextValues.get(principalKey), known, req.contextValues.get(requestIdKey));
        throw toConnectError(known);
      }
      if (err instanceof ConnectError) throw err;
      onInternal(path, err);
      throw new ConnectError(internalErrorMessage, Code.Internal, undefined, undefined, err);
    }
  };
}

export function registerRpcServices(router: ConnectRouter, services: RpcService[]): void {
  for (const s of services) router.service(s.service, s.impl);
  router.handlers.splice(0, router.handlers.length, ...router.handlers.map(undecodableAsInvalid));
}

export function rpcPaths(services: RpcService[]): Set<string> {
  return new Set(services.flatMap((s) => s.service.methods.map((m) => `/${s.service.typeName}/${m.name}`)));
}

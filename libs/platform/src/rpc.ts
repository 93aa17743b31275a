import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createContextKey, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { type Access, authorize, type Principal } from "./auth.js";
import { AppError, toConnectError } from "./errors.js";

/** The caller, as the fastify auth hook found it; read it in an RPC handler with `ctx.values.get(principalKey)`. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });

export interface RpcService<S extends DescService = DescService> {
  service: S;
  impl: Partial<ServiceImpl<S>>;
  /** Access for every method unless `methods` says otherwise. */
  access: Access;
  /** Per-method access by method name (e.g. `{ getServiceInfo: "public" }`). */
  methods?: Record<string, Access>;
}

/** Declares an RPC service with its access rules, keeping the impl typed against the service. */
export function rpcService<S extends DescService>(def: RpcService<S>): RpcService {
  return def as unknown as RpcService;
}

/**
 * Authorises each RPC by its declared access and turns AppErrors thrown by
 * handlers into Connect errors with the matching code.
 */
export function rpcInterceptor(
  services: RpcService[],
  onDenied: (method: string, principal: Principal | undefined, err: AppError) => void,
  onInternal: (method: string, err: unknown) => void,
): Interceptor {
  const accessByPath = new Map<string, Access>();
  for (const s of services) {
    for (const m of s.service.methods) accessByPath.set(`/${s.service.typeName}/${m.name}`, s.methods?.[m.localName] ?? s.access);
  }
  return (next) => async (req) => {
    const path = `/${req.service.typeName}/${req.method.name}`;
    const access = accessByPath.get(path) ?? { role: "admin" };
    try {
      if (access !== "public") authorize(req.contextValues.get(principalKey), access);
      return await next(req);
    } catch (err) {
      if (err instanceof AppError) {
        if (err.status === 401 || err.status === 403) onDenied(path, req.contextValues.get(principalKey), err);
        throw toConnectError(err);
      }
      if (err instanceof ConnectError) throw err;
      onInternal(path, err);
      throw new ConnectError("internal error; see the service log for this request id", Code.Internal, undefined, undefined, err);
    }
  };
}

export function registerRpcServices(router: ConnectRouter, services: RpcService[]): void {
  for (const s of services) router.service(s.service, s.impl);
}

export function rpcPaths(services: RpcService[]): Set<string> {
  return new Set(services.flatMap((s) => s.service.methods.map((m) => `/${s.service.typeName}/${m.name}`)));
}

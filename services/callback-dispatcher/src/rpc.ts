import { create } from "@bufbuild/protobuf";
import { CallbackDispatcherService, DryRunResponseSchema, GetRuleSetVersionResponseSchema } from "@opsplane/contracts";
import { badRequest, rpcService } from "@opsplane/platform";
import { dryRun } from "./dry-run.js";
import type { Registry } from "./registry.js";
import type { RuleSetCache } from "./rule-set.js";

/** Connect RPCs: `curl -X POST -H 'content-type: application/json' -d '{"method":"POST","path":"/notify"}' .../ops.v1.CallbackDispatcherService/DryRun` */
export function dispatcherRpc(d: { rules: RuleSetCache; registry: Registry }) {
  return rpcService({
    service: CallbackDispatcherService,
    access: { role: "viewer" },
    impl: {
      async dryRun(req) {
        if (!req.path.startsWith("/")) throw badRequest("path must start with /");
        const result = await dryRun(
          { method: (req.method || "POST").toUpperCase(), path: req.path, headers: req.headers, body: req.body },
          d.rules.current(),
          d.registry,
        );
        return create(DryRunResponseSchema, result);
      },
      getRuleSetVersion: async () => create(GetRuleSetVersionResponseSchema, { version: BigInt(d.rules.current().version) }),
    },
  });
}

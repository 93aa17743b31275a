import { create } from "@bufbuild/protobuf";
import {
  CallbackDecisionSchema,
  CallbackDispatcherService,
  DryRunResponseSchema,
  GetRuleSetVersionResponseSchema,
  ReplayCallbackResponseSchema,
  SearchDecisionsResponseSchema,
} from "@opsplane/contracts";
import { AppError, badRequest, principalKey, requestIdKey, rpcService } from "@opsplane/platform";
import type { Queryable } from "@opsplane/store";
import { searchDecisions } from "./decision-search.js";
import { dryRun } from "./dry-run.js";
import type { Registry } from "./registry.js";
import type { Replayer } from "./replay.js";
import type { RuleSetCache } from "./rule-set.js";
import { envNamePattern, httpMethod } from "./schemas.js";

/**
 * A replay's 409 (production needs its name, the callback is no longer kept, its environment is gone)
 * says the replay cannot be done as asked, not that something already exists (the kit's reading of
 * 409): over Connect it is failed_precondition, which the kit gives 412.
 */
const asPrecondition = (err: unknown) =>
  err instanceof AppError && err.status === 409 ? new AppError(412, "failed_precondition", err.message, err.details) : err;

/** Connect RPCs: `curl -X POST -H 'content-type: application/json' -d '{"method":"POST","path":"/notify"}' .../ops.v1.CallbackDispatcherService/DryRun` */
export function dispatcherRpc(d: { rules: RuleSetCache; registry: Registry; replayer: Replayer; pool: Queryable; viaPseudonym: string }) {
  return rpcService({
    service: CallbackDispatcherService,
    access: { role: "viewer" },
    methods: { replayCallback: { role: "operator" } },
    // As the REST search: a callback's id may hold a NUL, and it is looked up made storable, as it was stored.
    allowUnstorable: ["searchDecisions"],
    impl: {
      async replayCallback(req, ctx) {
        if (!/^[0-9]+$/.test(req.decisionId)) throw badRequest("decisionId must be a decision id (a number)");
        if (req.env && !new RegExp(envNamePattern).test(req.env)) throw badRequest(`env "${req.env}" is not an environment name`);
        const r = await d.replayer
          .replay({
            decisionId: req.decisionId,
            env: req.env || undefined,
            principal: ctx.values.get(principalKey),
            requestId: ctx.values.get(requestIdKey),
          })
          .catch((err: unknown) => {
            throw asPrecondition(err);
          });
        return create(ReplayCallbackResponseSchema, {
          replayId: r.id,
          env: r.env,
          status: r.status,
          latencyMs: r.latencyMs,
          error: r.error ?? "",
          responseBody: r.response?.body ?? "",
        });
      },
      // The REST search's twin: empty fields are no filter, as absent query parameters are there.
      async searchDecisions(req) {
        if (req.limit < 0 || req.limit > 1000) throw badRequest(`limit must be between 1 and 1000 (got ${req.limit})`);
        const page = await searchDecisions(d.pool, {
          rule: req.rule || undefined,
          objectId: req.objectId || undefined,
          target: req.target || undefined,
          reason: req.reason || undefined,
          requestId: req.requestId || undefined,
          from: req.from || undefined,
          to: req.to || undefined,
          limit: req.limit || undefined,
          pageToken: req.pageToken || undefined,
        });
        return create(SearchDecisionsResponseSchema, {
          decisions: page.decisions.map((r) =>
            create(CallbackDecisionSchema, {
              id: r.id,
              at: new Date(r.at).toISOString(),
              requestId: r.requestId,
              method: r.method,
              path: r.path,
              rule: r.rule ?? "",
              objectId: r.objectId ?? "",
              targetEnv: r.targetEnv ?? "",
              reason: r.reason,
              detail: r.detail ?? "",
              status: r.status,
              latencyMs: r.latencyMs,
              error: r.error ?? "",
              replayable: r.replayable,
            }),
          ),
          nextPageToken: page.nextPageToken,
        });
      },
      async dryRun(req) {
        if (!req.path.startsWith("/")) throw badRequest("path must start with /");
        // As the REST dry run's schema has it: a method no request could carry ("PO ST") is no dry run.
        if (req.method && !httpMethod.test(req.method))
          throw badRequest(`method must be an HTTP method such as POST, not ${JSON.stringify(req.method)}`);
        const result = await dryRun(
          { method: (req.method || "POST").toUpperCase(), path: req.path, headers: req.headers, body: req.body },
          d.rules.current(),
          d.registry,
          d.viaPseudonym,
        );
        return create(DryRunResponseSchema, result);
      },
      getRuleSetVersion: async () => create(GetRuleSetVersionResponseSchema, { version: BigInt(d.rules.current().version) }),
    },
  });
}

import { createDispatcherClient } from "./dispatcher-client.js";
import { installInterceptor } from "./interceptor.js";
import { createReporter } from "./reporter.js";
import { type CompiledRule, compileRule, type ScriptCompiler } from "./rules/index.js";

export interface AgentOptions {
  /** Base URL of callback-dispatcher. */
  dispatcherUrl: string;
  /** API key (Bearer) or `appId:secret` app credentials (Basic). */
  token?: string;
  /** This test environment's name as configured in the dispatcher, e.g. "sit". */
  env: string;
  rulesRefreshMs?: number;
  /** After a failed report, how long to wait before sending it again. Reports otherwise leave at once. */
  retryMs?: number;
  batchSize?: number;
  maxQueue?: number;
  /** Largest request/response body copied for id extraction. */
  maxBodyBytes?: number;
  timeoutMs?: number;
  /** Builds the sandbox for script extractors on first need; without it script rules are skipped. */
  scriptCompiler?: () => Promise<ScriptCompiler>;
  log?: (line: string) => void;
}

export interface AgentStats {
  rulesVersion: number;
  rules: number;
  registered: number;
  sent: number;
  /** Registrations the dispatcher refused (see the log for why); never sent again. */
  refused: number;
  dropped: number;
  queued: number;
  extractionFailures: number;
  internalErrors: number;
}

export interface Agent {
  stats(): AgentStats;
  /** Fetches the rules now instead of waiting for the next refresh. */
  refreshRules(): Promise<void>;
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts intercepting this process's http servers. Nothing here can throw into
 * the app or hold it up: rules are fetched on an unref'd timer, registrations
 * sent as soon as they are found (off the request path), failures are logged
 * (once per kind of failure in a row) and counted.
 */
export function startAgent(o: AgentOptions): Agent {
  const log = o.log ?? ((line: string) => process.stderr.write(`[callback-agent] ${line}\n`));
  const client = createDispatcherClient({ url: o.dispatcherUrl, token: o.token, env: o.env, timeoutMs: o.timeoutMs ?? 5_000 });
  let rules: CompiledRule[] = [];
  let rulesVersion = 0;
  let registered = 0;
  let extractionFailures = 0;
  let internalErrors = 0;
  // Per source of trouble (reporting, fetching rules, one rule's extraction, …), the kind of problem it
  // last logged: a problem is logged when its source had none or another kind, so during a dispatcher
  // outage the failing reports and rule fetches are each logged once, not alternately every time.
  const failing = new Map<string, string>();
  const problem = (source: string, what: string, kind = what) => {
    if (failing.get(source) !== kind) log(what);
    failing.set(source, kind);
  };
  /** The source works again: said once when it had been failing. */
  const recovered = (source: string, what?: string) => {
    if (failing.delete(source) && what) log(what);
  };

  const reporter = createReporter({
    send: (batch) => client.register(batch),
    retryMs: o.retryMs ?? 1_000,
    batchSize: o.batchSize ?? 500,
    maxQueue: o.maxQueue ?? 10_000,
    onError: (err) => problem("reporting", `cannot report registrations: ${err.message}`),
    onSent: (outcome) => {
      recovered("reporting", "registrations reported again");
      // A batch taken whole: the next refusal is news again, even of the same kind.
      if (!outcome.reason) recovered("refusals");
    },
    onRefused: ({ refused, reason }) =>
      problem("refusals", `dispatcher refused ${refused} registrations (${reason.code}), not sent again: ${reason.message}`, reason.code),
  });

  let compiler: Promise<ScriptCompiler | undefined> | undefined;
  const fetchAndCompileRules = async () => {
    try {
      const doc = await client.fetchRules();
      recovered("rules", "rules fetched again");
      if (!doc) return;
      const needsScripts = doc.rules.some((r) => r.interface.id.kind === "script");
      let compileScript: ScriptCompiler | undefined;
      if (needsScripts && o.scriptCompiler) {
        // Without the sandbox (an install without @opsplane/sandbox) script rules are skipped, the others work.
        compiler ??= o.scriptCompiler().catch((err: Error) => {
          problem("scripts", `script extractors unavailable, script rules skipped: ${err.message}`);
          return undefined;
        });
        compileScript = await compiler;
      }
      const next: CompiledRule[] = [];
      for (const spec of doc.rules) {
        try {
          next.push(compileRule(spec, compileScript, "interface"));
          recovered(`rule ${spec.name}`);
        } catch (err) {
          problem(`rule ${spec.name}`, `rule ${spec.name} skipped: ${(err as Error).message}`);
        }
      }
      rules = next;
      rulesVersion = doc.version;
    } catch (err) {
      problem("rules", `cannot fetch rules: ${(err as Error).message}`);
    }
  };
  // One fetch at a time: a dispatcher slower than the refresh interval would otherwise get a pile of
  // fetches, and an older answer arriving last would replace newer rules.
  let refreshing: Promise<void> | undefined;
  const refreshRules = () => {
    refreshing ??= fetchAndCompileRules().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };

  const uninstall = installInterceptor({
    rules: () => rules,
    maxBodyBytes: o.maxBodyBytes ?? 64 * 1024,
    onId: (rule, id) => {
      registered++;
      recovered(`extraction ${rule}`);
      reporter.add({ rule, id });
    },
    onExtractionFailure: (rule, err) => {
      extractionFailures++;
      problem(`extraction ${rule}`, `rule ${rule}: no id: ${err.message}`);
    },
    onInternalError: (err) => {
      internalErrors++;
      problem("internal", `internal error (traffic unaffected): ${err.message}`);
    },
  });

  const timer = setInterval(() => void refreshRules(), o.rulesRefreshMs ?? 10_000);
  timer.unref();
  void refreshRules();

  return {
    stats: () => ({
      rulesVersion,
      rules: rules.length,
      registered,
      sent: reporter.sent,
      refused: reporter.refused,
      dropped: reporter.dropped,
      queued: reporter.queued,
      extractionFailures,
      internalErrors,
    }),
    refreshRules,
    flush: () => reporter.flush(),
    async stop() {
      clearInterval(timer);
      uninstall();
      reporter.stop();
      await reporter.flush();
    },
  };
}

/**
 * The sandbox for script extractors, loaded on first need: `@opsplane/sandbox` is an optional peer, so
 * an app that installs the agent alone still runs every rule but the script ones.
 */
export const lazySandboxScripts = async (): Promise<ScriptCompiler> => (await import("./sandbox-scripts.js")).sandboxScriptCompiler();

/** Options from the environment: OPSPLANE_DISPATCHER_URL, OPSPLANE_ENV, OPSPLANE_AGENT_TOKEN and the tuning knobs. */
export function agentOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): AgentOptions | string {
  const dispatcherUrl = env.OPSPLANE_DISPATCHER_URL;
  const name = env.OPSPLANE_ENV;
  if (!dispatcherUrl || !name) return "OPSPLANE_DISPATCHER_URL and OPSPLANE_ENV must be set; agent not started";
  // Neither line repeats the URL: it may hold a password, and it would land in the app's logs.
  if (!URL.canParse(dispatcherUrl)) return "OPSPLANE_DISPATCHER_URL is not a URL; agent not started";
  const { username, password } = new URL(dispatcherUrl);
  if (username || password) return "OPSPLANE_DISPATCHER_URL must not hold credentials; put them in OPSPLANE_AGENT_TOKEN; agent not started";
  const num = (v: string | undefined) => (v && Number.isFinite(Number(v)) && Number(v) > 0 ? Number(v) : undefined);
  return {
    dispatcherUrl,
    env: name,
    token: env.OPSPLANE_AGENT_TOKEN,
    rulesRefreshMs: num(env.OPSPLANE_RULES_REFRESH_MS),
    retryMs: num(env.OPSPLANE_RETRY_MS),
    maxQueue: num(env.OPSPLANE_MAX_QUEUE),
    maxBodyBytes: num(env.OPSPLANE_MAX_BODY_BYTES),
  };
}

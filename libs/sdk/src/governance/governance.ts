import { performance } from "node:perf_hooks";
import type { Sandbox } from "@opsplane/sandbox";
import type { ConfigValue, EdgeDecision, EdgeRequest, GovernanceState, LocalOverride, SdkLogger } from "../contracts.js";
import type { Gate } from "../edge.js";
import { baffleEntry, type ScriptCompiler } from "./baffle.js";
import { InterfaceGate } from "./interface-gate.js";
import { refusal } from "./responses.js";
import { parseRule, parseRuleKey, type Rule, type RuleType } from "./rules.js";

export interface GovernanceOptions {
  log: SdkLogger;
  /** Where baffle scripts run. Default: a one-worker sandbox, started by the first script rule. */
  sandbox?: () => Promise<Sandbox>;
  /** A monotonic clock in milliseconds. Default: performance.now. */
  now?: () => number;
  /** This instance's identities, which route conditions `by: "provider"` test (see `setProviders`). */
  providers?: readonly string[];
}

/** Budget of one baffle script call. */
const scriptTimeLimitMs = 100;

/** The decision for a code no rule names: nothing to count, nothing to finish. */
const ungoverned: EdgeDecision = Object.freeze({ action: "proceed", finish() {} });

/**
 * The governance gate (seed paragraph 0064): route switches, test baffles, rate limits and circuit
 * breakers per interface code, from pushed rules plus terminal overrides, all changed live. A code
 * no rule names costs one Map lookup. Rules are compiled when they arrive, never per request.
 */
export class Governance implements Gate {
  private readonly gates = new Map<string, InterfaceGate>();
  private readonly ignored = new Map<string, { revision?: number; reason: string; text: string }>();
  private readonly log: SdkLogger;
  private readonly clock: () => number;
  private readonly instanceOfflineRefusal = refusal("instance-offline", 503, "this instance is offline (terminal command)");
  private instanceOffline = false;
  private providers: ReadonlySet<string>;
  private readonly sandboxFactory: (() => Promise<Sandbox>) | undefined;
  private sandbox: Promise<Sandbox> | undefined;
  private readonly compile: ScriptCompiler;

  constructor(options: GovernanceOptions) {
    this.log = options.log;
    // perf_hooks' own object: the global `performance` is a lazy getter, run on every read.
    this.clock = options.now ?? (() => performance.now());
    this.providers = new Set(options.providers ?? []);
    this.sandboxFactory = options.sandbox;
    this.compile = async (source) => (await this.startSandbox()).compile(source, { entry: baffleEntry, timeLimitMs: scriptTimeLimitMs });
  }

  /** Governance's monotonic clock (ms): the edge times calls on it. */
  now(): number {
    return this.clock();
  }

  /** `now`: the clock's time of the request's arrival (read when left out). */
  enter(req: EdgeRequest, now?: number): EdgeDecision {
    if (this.instanceOffline) return this.instanceOfflineRefusal;
    const gate = this.gates.get(req.code);
    return gate === undefined ? ungoverned : gate.enter(req, now);
  }

  /**
   * Applies governance values: a push's changes (`deleted` removes a rule), or with `"full"` the
   * whole set from start-up metadata, which also removes every rule not in it. A value that does
   * not parse is logged once and ignored: the key keeps its previous rule. Breakers, buckets and
   * in-flight counts live on, whatever other rules change.
   */
  apply(values: readonly ConfigValue[], mode: "changes" | "full" = "changes"): void {
    const seen = new Set<string>();
    for (const v of values) {
      if (v.kind !== "governance") continue;
      seen.add(v.key);
      const key = parseRuleKey(v.key);
      if (typeof key === "string") {
        this.ignore(v, key);
        continue;
      }
      if (v.deleted) {
        this.ignored.delete(v.key);
        this.remove(key.type, key.code);
        continue;
      }
      const rule = parseRule(key.type, v.value);
      if (typeof rule === "string") {
        this.ignore(v, rule);
        continue;
      }
      this.ignored.delete(v.key);
      this.set(key.code, rule, v);
    }
    if (mode === "full")
      for (const gate of this.gates.values())
        for (const type of [...gate.rules.keys()]) if (!seen.has(`${type}/${gate.code}`)) this.remove(type, gate.code);
  }

  /** A terminal command for one interface; answers the override now in force. Throws RangeError for a bad value. */
  override(code: string, cmd: LocalOverride | null): LocalOverride {
    const applied = this.gate(code).setOverride(cmd);
    this.log.info(`governance override of ${code}: ${JSON.stringify(applied)}`, { code, override: applied });
    return applied;
  }

  /** Takes the whole instance offline (every request answers 503 instance-offline) or back. */
  setInstanceOffline(offline: boolean): void {
    this.instanceOffline = offline;
    this.log.info(offline ? "instance taken offline by a terminal command" : "instance back online", { offline });
  }

  /** This instance's identities (instance id, host name, `ip:port`, `label=value`) for provider conditions. */
  setProviders(providers: readonly string[]): void {
    this.providers = new Set(providers);
    for (const gate of this.gates.values()) gate.setProviders(this.providers);
  }

  describe(): GovernanceState {
    return {
      instanceOffline: this.instanceOffline,
      interfaces: [...this.gates.values()].filter((g) => g.active).map((g) => g.describe()),
      ignored: [...this.ignored].map(([key, i]) =>
        i.revision === undefined ? { key, reason: i.reason } : { key, revision: i.revision, reason: i.reason },
      ),
    };
  }

  /** Frees baffle scripts, and the sandbox if governance started it. */
  async close(): Promise<void> {
    for (const gate of this.gates.values()) gate.dispose();
    const sandbox = this.sandbox;
    this.sandbox = undefined;
    if (sandbox && !this.sandboxFactory) await sandbox.then((s) => s.close()).catch(() => {});
  }

  private set(code: string, rule: Rule, v: ConfigValue): void {
    const gate = this.gate(code);
    const text = JSON.stringify(v.value);
    const current = gate.rules.get(rule.type);
    gate.rules.set(rule.type, { revision: v.revision, value: v.value, text });
    if (current?.text === text) return;
    switch (rule.type) {
      case "route":
        gate.setRoute(rule.rule, this.providers);
        break;
      case "baffle":
        gate.setBaffle(rule.rule, this.compile, this.log);
        break;
      case "rate-limit":
        gate.setRateLimit(rule.rule);
        break;
      case "circuit-breaker":
        gate.setBreaker(rule.rule);
        break;
    }
    this.log.info(`governance rule ${v.key} applied`, { key: v.key, revision: v.revision });
  }

  private remove(type: RuleType, code: string): void {
    const gate = this.gates.get(code);
    if (!gate?.rules.delete(type)) return;
    if (type === "route") gate.setRoute(undefined, this.providers);
    else if (type === "baffle") gate.setBaffle(undefined, this.compile, this.log);
    else if (type === "rate-limit") gate.setRateLimit(undefined);
    else gate.setBreaker(undefined);
    this.log.info(`governance rule ${type}/${code} removed`, { key: `${type}/${code}` });
  }

  private ignore(v: ConfigValue, reason: string): void {
    const text = JSON.stringify(v.value) ?? "";
    const previous = this.ignored.get(v.key);
    this.ignored.set(v.key, { revision: v.revision, reason, text });
    if (previous?.reason === reason && previous.text === text) return;
    this.log.warn(`governance rule ${v.key} ignored, the previous rule stays: ${reason}`, { key: v.key, revision: v.revision });
  }

  private gate(code: string): InterfaceGate {
    let gate = this.gates.get(code);
    if (!gate) {
      gate = new InterfaceGate(code, this.clock);
      this.gates.set(code, gate);
    }
    return gate;
  }

  private startSandbox(): Promise<Sandbox> {
    if (!this.sandbox) {
      const started = this.sandboxFactory
        ? this.sandboxFactory()
        : import("@opsplane/sandbox").then((m) => m.createSandbox({ workers: 1 }));
      // A sandbox that failed to start is tried again by the next script rule.
      started.catch(() => {
        if (this.sandbox === started) this.sandbox = undefined;
      });
      this.sandbox = started;
    }
    return this.sandbox;
  }
}

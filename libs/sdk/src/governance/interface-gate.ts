import type { EdgeCall, EdgeDecision, EdgeRequest, GovernanceState, LocalOverride, RequestOutcome, SdkLogger } from "../contracts.js";
import { Baffle, type ScriptCompiler } from "./baffle.js";
import { CircuitBreaker, PASS, REJECT, TRIAL } from "./circuit-breaker.js";
import { type RespondDecision, refusal, retryAfter } from "./responses.js";
import { DEFER, RouteSwitch } from "./route-switch.js";
import type { BaffleRule, BreakerRule, RateLimitRule, RouteRule, RuleType } from "./rules.js";
import { TokenBucket } from "./token-bucket.js";

/** A pushed rule as applied, for `describe` and to recognise a value pushed again unchanged. */
export interface AppliedRule {
  revision?: number;
  value: unknown;
  /** The value as JSON: the same text is the same rule. */
  text: string;
}

/**
 * Everything governance applies to one interface (or queue, or job) code, checked in this order:
 * interface taken offline by a terminal command → route → baffle → breaker (or one forced open) →
 * concurrency → TPS. The cheap, request-independent refusals come first; a refused call uses no
 * breaker trial, slot or token. Refusals are built when a rule changes, never per request.
 */
export class InterfaceGate {
  readonly rules = new Map<RuleType, AppliedRule>();
  private route: RouteSwitch | undefined;
  private routeRule: RouteRule | undefined;
  private baffle: Baffle | undefined;
  private breaker: CircuitBreaker | undefined;
  private bucket: TokenBucket | undefined;
  private ruleConcurrency = Number.POSITIVE_INFINITY;
  private override: LocalOverride = {};
  // The override's switches as fields of their own: the hot path reads one shape.
  private offline = false;
  private breakOpen = false;
  private overrideBucket: TokenBucket | undefined;
  private concurrency = Number.POSITIVE_INFINITY;
  /** Calls let through and not yet finished. */
  inFlight = 0;

  private readonly offlineRefusal: RespondDecision;
  private readonly forcedOpenRefusal: RespondDecision;
  // Each is set whenever the breaker, bucket or limit it answers for exists.
  private openRefusal!: RespondDecision;
  private rateRefusal!: RespondDecision;
  private overrideRateRefusal!: RespondDecision;
  private concurrencyRefusal!: RespondDecision;

  /** The decision shared by every call let through while the breaker is closed: it allocates nothing. */
  readonly proceed: EdgeCall = { action: "proceed", finish: (outcome, now) => this.ended(outcome, now) };

  constructor(
    readonly code: string,
    readonly clock: () => number,
  ) {
    this.offlineRefusal = refusal("interface-offline", 503, `interface ${code} is offline on this instance (terminal command)`);
    this.forcedOpenRefusal = refusal(
      "circuit-open",
      503,
      `interface ${code} has its circuit breaker forced open on this instance (terminal command)`,
    );
  }

  /** `at`: the clock's time of the request's arrival, when the caller has read it. */
  enter(req: EdgeRequest, at?: number): EdgeDecision {
    if (this.offline) return this.offlineRefusal;
    if (this.route !== undefined) {
      const d = this.route.check(req);
      if (d !== undefined) return d;
    }
    if (this.baffle !== undefined)
      return this.baffle.script !== undefined && req.bodyFollows && req.body === undefined ? DEFER : this.baffle.decide(req);
    if (this.breakOpen) return this.forcedOpenRefusal;
    const breaker = this.breaker;
    const timed = breaker !== undefined || this.bucket !== undefined || this.overrideBucket !== undefined;
    const now = !timed ? 0 : at === undefined ? this.clock() : at;
    const admission = breaker === undefined ? PASS : breaker.admit(now);
    if (admission === REJECT) return this.openRefusal;
    let refused: RespondDecision | undefined;
    if (this.inFlight >= this.concurrency) refused = this.concurrencyRefusal;
    else if (this.bucket !== undefined && !this.bucket.take(now)) refused = this.rateRefusal;
    else if (this.overrideBucket !== undefined && !this.overrideBucket.take(now)) refused = this.overrideRateRefusal;
    if (refused !== undefined) {
      if (admission === TRIAL) breaker!.cancelTrial();
      return refused;
    }
    this.inFlight++;
    return admission === TRIAL ? new TrialCall(this, breaker!, breaker!.trial) : this.proceed;
  }

  /** A call let through by `proceed` ended. */
  private ended(outcome: RequestOutcome, now: number | undefined): void {
    this.inFlight--;
    if (this.breaker !== undefined) this.breaker.record(now ?? this.clock(), outcome);
  }

  /** Whether any pushed rule or local override applies. */
  get active(): boolean {
    return this.rules.size > 0 || Object.keys(this.override).length > 0;
  }

  setRoute(rule: RouteRule | undefined, providers: ReadonlySet<string>): void {
    this.routeRule = rule;
    const route = rule === undefined ? undefined : new RouteSwitch(this.code, rule, providers);
    this.route = route?.alwaysOpen ? undefined : route;
  }

  /** Provider conditions test this instance's identities: re-settle them when those change. */
  setProviders(providers: ReadonlySet<string>): void {
    this.setRoute(this.routeRule, providers);
  }

  setBaffle(rule: BaffleRule | undefined, compile: ScriptCompiler, log: SdkLogger): void {
    const previous = this.baffle;
    this.baffle = rule?.enabled ? new Baffle(this.code, rule, compile, log, previous) : undefined;
    previous?.dispose(this.baffle);
  }

  setBreaker(rule: BreakerRule | undefined): void {
    if (!rule?.enabled) this.breaker = undefined;
    else if (this.breaker) this.breaker.update(rule);
    else this.breaker = new CircuitBreaker(rule);
    if (rule?.enabled)
      this.openRefusal = refusal("circuit-open", 503, `interface ${this.code} is failing: its circuit breaker is open`, {
        "retry-after": retryAfter(rule.openMs),
      });
  }

  setRateLimit(rule: RateLimitRule | undefined): void {
    const tps = rule?.enabled ? rule.tps : undefined;
    this.bucket = this.bucketFor(this.bucket, tps);
    if (tps !== undefined) this.rateRefusal = rateRefusal(this.code, tps, "its rate limit");
    this.ruleConcurrency = (rule?.enabled ? rule.concurrency : undefined) ?? Number.POSITIVE_INFINITY;
    this.updateConcurrency();
  }

  /** Merges a terminal command into the override and answers the override now in force. */
  setOverride(cmd: LocalOverride | null): LocalOverride {
    const next: LocalOverride = cmd === null ? {} : { ...this.override };
    if (cmd !== null) {
      for (const field of ["tps", "concurrency", "breakOpen", "offline"] as const) {
        if (!(field in cmd) || cmd[field] === undefined) continue;
        if (cmd[field] === null) delete next[field];
        else (next as Record<string, unknown>)[field] = cmd[field];
      }
      checkOverride(next);
    }
    if (next.breakOpen === false) delete next.breakOpen;
    if (next.offline === false) delete next.offline;
    this.override = next;
    this.offline = next.offline === true;
    this.breakOpen = next.breakOpen === true;
    this.overrideBucket = this.bucketFor(this.overrideBucket, next.tps ?? undefined);
    if (typeof next.tps === "number") this.overrideRateRefusal = rateRefusal(this.code, next.tps, "the throttle a terminal command set");
    this.updateConcurrency();
    return { ...next };
  }

  describe(): GovernanceState["interfaces"][number] {
    const rules: Record<string, { revision?: number; value: unknown }> = {};
    for (const [type, r] of this.rules)
      rules[type] = r.revision === undefined ? { value: r.value } : { revision: r.revision, value: r.value };
    const state: GovernanceState["interfaces"][number] = { code: this.code, rules, inFlight: this.inFlight };
    if (Object.keys(this.override).length > 0) state.override = { ...this.override };
    if (this.breaker) state.breaker = this.breaker.snapshot(this.clock());
    return state;
  }

  dispose(): void {
    this.baffle?.dispose();
  }

  private bucketFor(bucket: TokenBucket | undefined, tps: number | undefined): TokenBucket | undefined {
    if (tps === undefined) return undefined;
    if (bucket === undefined) return new TokenBucket(tps, this.clock());
    bucket.setRate(tps, this.clock());
    return bucket;
  }

  private updateConcurrency(): void {
    this.concurrency = Math.min(this.ruleConcurrency, this.override.concurrency ?? Number.POSITIVE_INFINITY);
    if (Number.isFinite(this.concurrency))
      this.concurrencyRefusal = refusal(
        "concurrency-limited",
        429,
        `interface ${this.code} already has ${this.concurrency} calls in flight, its limit`,
        {
          "retry-after": "1",
        },
      );
  }
}

/** The one call a half-open breaker lets through: only its outcome closes or re-opens the breaker. */
class TrialCall implements EdgeCall {
  readonly action = "proceed";

  constructor(
    private readonly gate: InterfaceGate,
    private readonly breaker: CircuitBreaker,
    private readonly trial: number,
  ) {}

  finish(outcome: RequestOutcome, now?: number): void {
    this.gate.inFlight--;
    this.breaker.trialEnded(this.trial, now ?? this.gate.clock(), outcome);
  }
}

function rateRefusal(code: string, tps: number, what: string): RespondDecision {
  return refusal("rate-limited", 429, `interface ${code} is over ${what}: ${tps} calls a second`, {
    "retry-after": retryAfter(1000 / tps),
  });
}

function checkOverride(o: LocalOverride): void {
  if (o.tps !== undefined && o.tps !== null && !(typeof o.tps === "number" && Number.isFinite(o.tps) && o.tps > 0 && o.tps <= 1_000_000))
    throw new RangeError("tps must be a number above 0 and at most 1000000");
  if (
    o.concurrency !== undefined &&
    o.concurrency !== null &&
    !(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 100_000)
  )
    throw new RangeError("concurrency must be an integer from 1 to 100000");
  for (const flag of ["breakOpen", "offline"] as const)
    if (o[flag] !== undefined && o[flag] !== null && typeof o[flag] !== "boolean") throw new RangeError(`${flag} must be true or false`);
}

import { AppError, badRequest, forbidden, type Logger, outageRetryAfterSeconds, unavailable } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";
import type { AppResourceStore } from "./app-resources.js";
import { type AppStore, TokenRefused } from "./apps.js";
import type { Actor } from "./change-log.js";
import { parseDictionary, placeOf, refuseDuplicateCodes, typeCsvCells } from "./dictionary-import.js";
import type { ItemRef } from "./identifiers.js";
import { checkRegistration, type InstanceStore, type RegisteredInstance, type Registration } from "./instances.js";
import type { ItemStore, PutItemInput } from "./items.js";
import type { LockStore } from "./locks.js";
import { type MetadataService, MetadataUnavailable } from "./metadata.js";
import type { ConfigMetrics } from "./metrics.js";
import type { ResourceStore } from "./resources.js";
import { socketPath } from "./routes/instance-socket.js";
import type { SequenceStore } from "./sequences.js";
import type { TokenThrottle } from "./token-throttle.js";
import { businessCategories } from "./value-schemas.js";

/**
 * Everything the REST view and the Connect RPCs call: the stores, plus the few steps that span
 * several of them (token checks for instance calls, refusal accounting, dictionary import).
 */
export class ConfigCenter {
  constructor(
    readonly pool: Pool,
    readonly log: Logger,
    readonly metrics: ConfigMetrics,
    readonly apps: AppStore,
    readonly instances: InstanceStore,
    readonly items: ItemStore,
    readonly resources: ResourceStore,
    readonly metadata: MetadataService,
    readonly locks: LockStore,
    readonly sequences: SequenceStore,
    readonly appResources: AppResourceStore,
    readonly throttle: TokenThrottle,
    readonly o: { heartbeatIntervalMs: number; heartbeatTimeoutMs: number; importMaxEntries: number },
  ) {}

  /**
   * Seed step 2: credentials for a token. A refusal is counted, audited and answered with its reason;
   * guessing (wrong secrets, unknown apps) is throttled per app id and per client address.
   */
  async issueToken(appId: unknown, secret: unknown, requestId: string, address?: string) {
    const id = typeof appId === "string" ? appId : "";
    try {
      const wait = await this.throttle.retryAfter(id, address);
      if (wait !== undefined)
        throw new TokenRefused(
          "throttled",
          new AppError(
            429,
            "too_many_requests",
            `too many failed token requests for this app id or address; retry in ${wait} s`,
            undefined,
            wait,
          ),
        );
      return await this.apps.issueToken(appId, secret, requestId);
    } catch (err) {
      if (!(err instanceof TokenRefused)) throw err;
      if (err.reason === "bad-credentials" || err.reason === "unknown-app") await this.throttle.failed(id, address);
      this.metrics.registrationRefusals.inc({ reason: err.reason });
      this.apps.refused(id, err.reason, err.message, requestId);
      throw err.error;
    }
  }

  /** Seed steps 4-5: registers an instance of the token's app. */
  async register(token: string | undefined, r: Registration) {
    const appId = await this.refusable(() => this.apps.verifyToken(token), "bad-token");
    const { env } = await this.refusable(async () => checkRegistration(r), "malformed");
    await this.refusable(() => this.apps.checkEnvironment(appId, env), "environment");
    const instance = await this.refusable(() => this.instances.register(appId, r), "malformed");
    return {
      instanceId: instance.instanceId,
      heartbeatIntervalMs: this.o.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.o.heartbeatTimeoutMs,
      socketPath: socketPath(instance.instanceId),
    };
  }

  /** The instance a call is about, checked against the token's app. */
  async instanceFor(token: string | undefined, instanceId: string): Promise<RegisteredInstance> {
    const appId = await this.apps.verifyToken(token);
    const instance = await this.instances.identity(instanceId);
    if (instance.appId !== appId) throw forbidden(`instance ${instanceId} does not belong to app ${appId}`);
    await this.apps.checkEnvironment(appId, instance.env);
    return instance;
  }

  async metadataJson(token: string | undefined, instanceId: string): Promise<string> {
    const instance = await this.instanceFor(token, instanceId);
    return this.unavailableOnResolution(() => this.metadata.json(instance));
  }

  async metadataOf(token: string | undefined, instanceId: string) {
    const instance = await this.instanceFor(token, instanceId);
    return this.unavailableOnResolution(() => this.metadata.metadata(instance));
  }

  /**
   * Sets a parameter or rule. A governance rule for an interface or queue its app never reported is
   * accepted (rules may be written before the first report) with a warning naming the code.
   */
  async putItem(who: Actor, ref: ItemRef, input: PutItemInput, expectRevision: number | undefined) {
    const change = await this.items.put(who, ref, input, expectRevision);
    const code = ref.key.slice(ref.key.indexOf("/") + 1);
    const unreported = ref.kind === "governance" && !(await this.appResources.reported(ref.app, code));
    const warnings = unreported
      ? [`app ${ref.app} has never reported an interface or queue "${code}": the rule is kept and applies once an instance reports it`]
      : [];
    return { ...change, warnings };
  }

  /** A dictionary from CSV or JSON in one versioned change; a refusal names entries by their line or position in the file. */
  async importDictionary(
    who: Actor,
    ref: ItemRef,
    o: { format: string; content: unknown; expectRevision?: number; comment?: string; category?: string },
  ) {
    if (ref.kind !== "business") throw badRequest("only business parameters are imported as dictionaries");
    const parsed = parseDictionary(o.format, o.content, this.o.importMaxEntries);
    const existing = await this.items.find(ref);
    const category = o.category || existing?.category;
    // The schema the import is validated against: the item's own, else its category's.
    const dictionary = typeCsvCells(parsed, existing?.schema ?? businessCategories[category ?? ""]);
    refuseDuplicateCodes(dictionary, category ?? "");
    const { entries } = dictionary;
    const change = await this.items.put(
      who,
      ref,
      {
        value: entries,
        category: o.category || undefined,
        comment: o.comment || `import of ${entries.length} entries`,
        entryPlace: (i) => placeOf(dictionary, i),
      },
      o.expectRevision,
      "import",
    );
    return { ...change, entries: entries.length };
  }

  private async refusable<T>(fn: () => Promise<T>, reason: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof AppError && err.status < 500)
        this.metrics.registrationRefusals.inc({ reason: reason === "bad-token" && err.status === 403 ? "disabled" : reason });
      throw err;
    }
  }

  private async unavailableOnResolution<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MetadataUnavailable)
        throw unavailable(`start-up metadata cannot be built: ${err.message}`, outageRetryAfterSeconds);
      throw err;
    }
  }
}

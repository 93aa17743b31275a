import type { ReportedResourceJson as ReportedResource } from "@opsplane/contracts";
import type { SdkLogger } from "./contracts.js";
import { OnceLog } from "./logger.js";
import { backoffDelay } from "./retry.js";

export interface ResourceDeclaration {
  interfaces?: ReportedResource[];
  queues?: ReportedResource[];
  jobs?: ReportedResource[];
}

export type ResourceKind = keyof ResourceDeclaration;
const kinds: ResourceKind[] = ["interfaces", "queues", "jobs"];

export interface ResourcesReportOptions {
  /** PUT …/instances/{id}/resources. */
  send(body: Required<ResourceDeclaration>): Promise<void>;
  /** A report config-center refused (400 naming the field) is not sent again until the resources change. */
  isRefusal(err: unknown): boolean;
  log: SdkLogger;
  retryBaseMs: number;
  retryMaxMs: number;
}

/**
 * What the app serves (seed step 11): resources the app declared, and those the adapters saw (a
 * route fastify registered), reported once joined and again whenever they change. A declared
 * resource wins over one discovered with the same code. A report that fails is sent again with
 * backoff; reports while one is under way become one more report.
 */
export class ResourcesReport {
  private readonly declared = new Map<ResourceKind, Map<string, ReportedResource>>(kinds.map((k) => [k, new Map()]));
  private readonly discovered = new Map<ResourceKind, Map<string, ReportedResource>>(kinds.map((k) => [k, new Map()]));
  private active = false;
  private sending: Promise<void> | undefined;
  private again = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly problems: OnceLog;
  /** Reports config-center accepted. */
  reported = 0;

  constructor(private readonly o: ResourcesReportOptions) {
    this.problems = new OnceLog(o.log);
  }

  /** Adds (or replaces, by code) declared resources. */
  declare(d: ResourceDeclaration): void {
    let changed = false;
    for (const kind of kinds)
      for (const r of d[kind] ?? []) {
        const known = this.declared.get(kind)!;
        if (JSON.stringify(known.get(r.code)) !== JSON.stringify(r)) changed = true;
        known.set(r.code, { ...r });
      }
    if (changed) this.changed();
  }

  /** A resource an adapter saw; ignored when known already. */
  discover(kind: ResourceKind, r: ReportedResource): void {
    if (this.declared.get(kind)!.has(r.code) || this.discovered.get(kind)!.has(r.code)) return;
    this.discovered.get(kind)!.set(r.code, { ...r });
    this.changed();
  }

  /** Declared over discovered, each list ordered by code. */
  body(): Required<ResourceDeclaration> {
    const list = (kind: ResourceKind) =>
      [...new Map([...this.discovered.get(kind)!, ...this.declared.get(kind)!]).values()].sort((a, b) => a.code.localeCompare(b.code));
    return { interfaces: list("interfaces"), queues: list("queues"), jobs: list("jobs") };
  }

  /** Joined: report now (step 11), and from now on whenever the resources change. */
  activate(): Promise<void> {
    this.active = true;
    return this.report();
  }

  /** Not joined (any more): nothing is sent until activated again. */
  deactivate(): void {
    this.active = false;
    clearTimeout(this.retryTimer);
  }

  private changed(): void {
    if (this.active) void this.report();
  }

  private report(): Promise<void> {
    if (this.sending) {
      this.again = true;
      return this.sending;
    }
    clearTimeout(this.retryTimer);
    this.sending = (async () => {
      do {
        this.again = false;
        if (!this.active) return;
        try {
          await this.o.send(this.body());
          this.reported++;
          this.attempt = 0;
          this.problems.resolved("resources reported to config-center");
        } catch (err) {
          const msg = (err as Error).message;
          if (this.o.isRefusal(err)) {
            this.problems.problem(`refused:${msg}`, `resources report refused: ${msg}`, undefined, "error");
            return;
          }
          this.problems.problem(`failed:${msg}`, `resources report not sent (${msg}); retrying`);
          if (!this.again) {
            this.retryTimer = setTimeout(() => void this.report(), backoffDelay(this.attempt++, this.o.retryBaseMs, this.o.retryMaxMs));
            this.retryTimer.unref();
          }
        }
      } while (this.again);
    })().finally(() => {
      this.sending = undefined;
    });
    return this.sending;
  }
}

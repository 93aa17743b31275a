import type { ControlCommand } from "@opsplane/contracts";
import type { GovernanceControl, LocalOverride } from "../contracts.js";

const interfaceKinds = new Set(["throttle", "break", "interface-offline", "interface-online"]);
const kinds = [...interfaceKinds, "instance-offline", "instance-online", "shutdown", "clear"];
const lapsing = new Set(["throttle", "break", "interface-offline", "instance-offline"]);

/** Why `cmd` cannot be applied (a 400), or undefined. Limits match config-center's governance rule schemas. */
export function commandProblem(cmd: ControlCommand): string | undefined {
  if (!kinds.includes(cmd.kind)) return `kind ${JSON.stringify(cmd.kind)} is not one of ${kinds.join(", ")}`;
  if (interfaceKinds.has(cmd.kind) && !cmd.code) return `${cmd.kind} needs the interface code in "code"`;
  if (cmd.code.length > 256) return "code is longer than 256 characters";
  if (cmd.kind === "throttle") {
    if (cmd.tps === undefined && cmd.concurrency === undefined) return "throttle needs tps, concurrency or both";
    if (cmd.tps !== undefined && !(cmd.tps > 0 && cmd.tps <= 1_000_000)) return "tps must be above 0 and at most 1000000";
    if (cmd.concurrency !== undefined && !(cmd.concurrency >= 1 && cmd.concurrency <= 100_000)) return "concurrency must be 1 to 100000";
  }
  if (cmd.durationMs !== undefined) {
    if (!lapsing.has(cmd.kind)) return `durationMs does not apply to ${cmd.kind}`;
    if (!(cmd.durationMs >= 1 && cmd.durationMs <= 86_400_000)) return "durationMs must be 1 to 86400000 (a day)";
  }
  if (cmd.graceMs !== undefined && !(cmd.graceMs >= 0 && cmd.graceMs <= 600_000)) return "graceMs must be 0 to 600000";
  return undefined;
}

/**
 * Applies control commands through governance's local overrides and remembers what it applied,
 * so `clear` can take every override away and each answer lists what is in force. Overrides
 * belong to this process: a restart serves on config-center's rules alone again.
 */
export class CommandApplier {
  private readonly overrides = new Map<string, LocalOverride>();
  private readonly lapses = new Map<string, NodeJS.Timeout>();
  private instanceOffline = false;

  constructor(private readonly governance: GovernanceControl) {}

  /** Applies a command commandProblem() accepted (not shutdown: the terminal runs it after answering); says what it did. */
  apply(cmd: ControlCommand): string {
    const lapse = cmd.durationMs !== undefined ? `, for ${cmd.durationMs} ms` : "";
    switch (cmd.kind) {
      case "throttle": {
        const change: LocalOverride = {};
        if (cmd.tps !== undefined) change.tps = cmd.tps;
        if (cmd.concurrency !== undefined) change.concurrency = cmd.concurrency;
        this.change(cmd.code, change);
        this.lapseAfter(cmd, () => this.change(cmd.code, { tps: null, concurrency: null }));
        return `${cmd.code}: limited to ${limits(change)}${lapse}`;
      }
      case "break":
        this.change(cmd.code, { breakOpen: true });
        this.lapseAfter(cmd, () => this.change(cmd.code, { breakOpen: null }));
        return `${cmd.code}: circuit forced open, answered 503${lapse}`;
      case "interface-offline":
        this.change(cmd.code, { offline: true });
        this.lapseAfter(cmd, () => this.change(cmd.code, { offline: null }));
        return `${cmd.code}: offline, answered 503${lapse}`;
      case "interface-online":
        this.stopLapse(cmd.code, "interface-offline");
        this.change(cmd.code, { offline: null });
        return `${cmd.code}: online`;
      case "instance-offline":
        this.setInstanceOffline(true);
        this.lapseAfter(cmd, () => this.setInstanceOffline(false));
        return `instance offline: every request answered 503${lapse}`;
      case "instance-online":
        this.stopLapse("", "instance-offline");
        this.setInstanceOffline(false);
        return "instance online";
      case "clear":
        if (cmd.code) return this.clear(cmd.code) ? `${cmd.code}: overrides cleared` : `${cmd.code}: no override to clear`;
        for (const code of [...this.overrides.keys()]) this.clear(code);
        this.stopLapse("", "instance-offline");
        this.setInstanceOffline(false);
        return "every override cleared and instance online: config-center's rules alone apply";
      default:
        return "";
    }
  }

  /** The overrides in force, in words, by interface code. */
  describeOverrides(): Record<string, string> {
    return Object.fromEntries([...this.overrides].map(([code, o]) => [code, describe(o)]));
  }

  isInstanceOffline(): boolean {
    return this.instanceOffline;
  }

  /** Merges `change` into the code's override in governance; keeps what governance answers is in force. */
  private change(code: string, change: LocalOverride): void {
    const now = this.governance.override(code, change);
    if (Object.keys(now).length === 0) this.overrides.delete(code);
    else this.overrides.set(code, now);
  }

  private clear(code: string): boolean {
    for (const kind of lapsing) this.stopLapse(code, kind);
    this.governance.override(code, null);
    return this.overrides.delete(code);
  }

  private setInstanceOffline(offline: boolean): void {
    this.instanceOffline = offline;
    this.governance.setInstanceOffline(offline);
  }

  /** A later command of the same kind for the same code replaces the lapse of an earlier one. */
  private lapseAfter(cmd: ControlCommand, undo: () => void): void {
    const code = cmd.kind === "instance-offline" ? "" : cmd.code;
    this.stopLapse(code, cmd.kind);
    if (cmd.durationMs === undefined) return;
    const key = `${cmd.kind}\u0000${code}`;
    const timer = setTimeout(() => {
      this.lapses.delete(key);
      undo();
    }, cmd.durationMs);
    // Unref'd: a lapse pending never keeps the process alive; it outlives a terminal stopped and started again.
    timer.unref();
    this.lapses.set(key, timer);
  }

  private stopLapse(code: string, kind: string): void {
    const key = `${kind}\u0000${code}`;
    clearTimeout(this.lapses.get(key));
    this.lapses.delete(key);
  }
}

function limits(o: LocalOverride): string {
  return [typeof o.tps === "number" && `${o.tps} requests/s`, typeof o.concurrency === "number" && `${o.concurrency} in flight`]
    .filter(Boolean)
    .join(" and ");
}

function describe(o: LocalOverride): string {
  const parts: string[] = [];
  if (typeof o.tps === "number" || typeof o.concurrency === "number") parts.push(`limited to ${limits(o)}`);
  if (o.breakOpen) parts.push("circuit forced open");
  if (o.offline) parts.push("offline");
  return parts.join("; ");
}

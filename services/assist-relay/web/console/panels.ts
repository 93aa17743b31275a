import type { ConsoleEntry, NetworkEntry } from "../../src/protocol.js";

/**
 * The developer's own console and network panels, fed by the operator's stream. The page sends
 * its history again to a developer who re-joins (after a dropped connection, a reload of either
 * side): lines already shown are not shown twice.
 */
export class Panels {
  private readonly shown = new Set<string>();

  constructor(
    private readonly consoleList: HTMLElement,
    private readonly networkList: HTMLElement,
  ) {}

  clear(): void {
    this.shown.clear();
    this.consoleList.replaceChildren();
    this.networkList.replaceChildren();
  }

  addConsole(entries: ConsoleEntry[]): void {
    for (const e of entries) {
      if (this.seen(`c${e.at}|${e.level}|${e.text}`)) continue;
      const li = document.createElement("li");
      li.className = `console-line level-${e.level}`;
      li.textContent = `${new Date(e.at).toLocaleTimeString()} [${e.level}] ${e.text}`;
      this.consoleList.append(li);
    }
  }

  addNetwork(entries: NetworkEntry[]): void {
    for (const e of entries) {
      if (this.seen(`n${e.startedAt}|${e.method}|${e.url}|${e.status}`)) continue;
      const li = document.createElement("li");
      li.className = "network-call";
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${e.method} ${e.url} → ${e.status || e.error} · ${Math.round(e.durationMs)} ms (${e.via})`;
      const pre = document.createElement("pre");
      pre.textContent = `request: ${e.requestBody ?? "(none)"}\nresponse: ${e.responseBody ?? "(none)"}`;
      details.append(summary, pre);
      li.append(details);
      this.networkList.append(li);
    }
  }

  private seen(key: string): boolean {
    if (this.shown.has(key)) return true;
    this.shown.add(key);
    return false;
  }
}

import { applyCss } from "./css.js";
import type { ConsoleEntry, NetworkEntry } from "./protocol.js";

/**
 * The floating console panel on the operator's page: console lines and API
 * calls. It is part of the recorded page, so the developer sees the very same
 * panel in the live view; opening or closing it on either side syncs.
 */
export class ConsolePanel {
  readonly el: HTMLDivElement;
  private readonly consoleList: HTMLOListElement;
  private readonly networkList: HTMLOListElement;

  constructor(private readonly onToggle: (open: boolean) => void) {
    this.el = document.createElement("div");
    this.el.id = "opsplane-assist-panel";
    this.el.style.cssText =
      "position:fixed;left:12px;bottom:12px;width:420px;max-height:45vh;overflow:auto;z-index:2147483646;background:#111;color:#eee;font:12px/1.4 monospace;border-radius:6px;padding:8px;display:none;box-shadow:0 2px 12px #0006";
    this.el.innerHTML = `<div data-css="display:flex;justify-content:space-between"><b>Console</b><button type="button" data-close data-css="font:inherit">×</button></div>
      <ol data-console data-css="list-style:none;margin:4px 0;padding:0"></ol><b>Network</b><ol data-network data-css="list-style:none;margin:4px 0;padding:0"></ol>`;
    applyCss(this.el);
    this.consoleList = this.el.querySelector("[data-console]")!;
    this.networkList = this.el.querySelector("[data-network]")!;
    this.el.querySelector("[data-close]")!.addEventListener("click", () => this.toggle(false));
  }

  get open(): boolean {
    return this.el.style.display !== "none";
  }

  /** Opens or closes; `fromRemote` when the developer asked, so the change is not echoed back. */
  toggle(open: boolean, fromRemote = false): void {
    this.el.style.display = open ? "block" : "none";
    if (!fromRemote) this.onToggle(open);
  }

  addConsole(e: ConsoleEntry): void {
    const li = document.createElement("li");
    li.className = `assist-console-line level-${e.level}`;
    li.style.color = e.level === "error" ? "#f77" : e.level === "warn" ? "#fc6" : "#eee";
    li.textContent = `[${e.level}] ${e.text}`;
    this.append(this.consoleList, li);
  }

  addNetwork(e: NetworkEntry): void {
    const li = document.createElement("li");
    li.className = "assist-network-call";
    li.textContent = `${e.method} ${e.url} → ${e.status || e.error} (${Math.round(e.durationMs)} ms)`;
    this.append(this.networkList, li);
  }

  private append(list: HTMLOListElement, li: HTMLLIElement): void {
    list.append(li);
    while (list.children.length > 200) list.firstElementChild!.remove();
  }
}

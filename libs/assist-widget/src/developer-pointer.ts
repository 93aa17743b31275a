import { applyCss } from "./css.js";

/**
 * Where the developer points in their live view, drawn on the operator's page: an arrow with the
 * developer's name. Part of the widget's own UI (rr-block), so it is never streamed back, and it
 * lets no click through (pointer-events: none).
 */
export class DeveloperPointer {
  readonly el = document.createElement("div");

  constructor() {
    this.el.id = "opsplane-assist-pointer";
    this.el.className = "rr-block";
    this.el.style.cssText =
      "position:fixed;left:0;top:0;z-index:2147483647;pointer-events:none;display:none;font:12px sans-serif;color:#fff;transition:transform 60ms linear";
    this.el.innerHTML = `<svg width="16" height="20" viewBox="0 0 16 20"><path d="M0 0 L0 16 L4 12 L7 19 L10 18 L7 11 L13 11 Z" fill="#d81b60" stroke="#fff"/></svg><span data-name data-css="background:#d81b60;border-radius:3px;padding:1px 4px;margin-left:2px"></span>`;
    applyCss(this.el);
  }

  move(developer: string, x: number, y: number): void {
    this.el.querySelector("[data-name]")!.textContent = developer;
    this.el.style.transform = `translate(${Math.round(x)}px, ${Math.round(y)}px)`;
    this.el.style.display = "block";
    this.el.dataset.developer = developer;
  }

  /** Hidden when that developer leaves (or, with no name, whoever it was). */
  hide(developer?: string): void {
    if (developer === undefined || this.el.dataset.developer === developer) this.el.style.display = "none";
  }
}

import { type eventWithTime, Replayer } from "rrweb";
import type { ControlAction } from "../../src/protocol.js";

/**
 * Rebuilds the operator's page from the rrweb stream (live mode) and, while
 * control is granted, turns the developer's clicks, typing and wheel in the
 * rebuilt page into control actions addressed by mirror node id.
 */
export class LiveView {
  private replayer: Replayer | undefined;
  private interactive = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly onAction: (a: ControlAction) => void,
  ) {}

  add(events: eventWithTime[]): void {
    for (const event of events) {
      // Start (or restart, after a fresh snapshot) at a Meta event; incremental events before one have no page to apply to.
      if (!this.replayer && event.type !== 4) continue;
      if (!this.replayer) this.start();
      // Played on arrival: the operator's clock may differ from ours.
      this.replayer!.addEvent({ ...event, timestamp: Date.now() });
    }
  }

  private start(): void {
    this.replayer = new Replayer([], { root: this.root, liveMode: true, mouseTail: false, showWarning: false, triggerFocus: false });
    this.replayer.on("fullsnapshot-rebuilded", () => this.wire());
    this.replayer.startLive(Date.now());
    this.setInteractive(this.interactive);
  }

  /** The rebuilt page's document (for tests and for "what does the developer see"). */
  get document(): Document | undefined {
    return this.replayer?.iframe.contentDocument ?? undefined;
  }

  /** The mirror id (shared with the operator's page) of the first rebuilt element matching `selector`, or -1. */
  nodeId(selector: string): number {
    const el = this.document?.querySelector(selector);
    return el && this.replayer ? this.replayer.getMirror().getId(el) : -1;
  }

  setInteractive(on: boolean): void {
    this.interactive = on;
    if (!this.replayer) return;
    if (on) this.replayer.enableInteract();
    else this.replayer.disableInteract();
    this.wire();
  }

  private readonly onClick = (ev: MouseEvent) => {
    if (!this.interactive) return;
    ev.preventDefault();
    const id = this.replayer!.getMirror().getId(ev.target as Node);
    if (id > 0) this.onAction({ kind: "click", id });
  };

  private readonly onInput = (ev: Event) => {
    if (!this.interactive) return;
    const target = ev.target as HTMLInputElement;
    const id = this.replayer!.getMirror().getId(target);
    if (id > 0) this.onAction({ kind: "input", id, value: target.value });
  };

  private readonly onWheel = (ev: WheelEvent) => {
    if (!this.interactive) return;
    ev.preventDefault();
    this.onAction({ kind: "scroll", dx: ev.deltaX, dy: ev.deltaY });
  };

  /** Each full snapshot rebuilds the document (document.open drops its listeners), so they are attached again every time. */
  private wire(): void {
    const doc = this.replayer?.iframe.contentDocument;
    if (!doc) return;
    doc.removeEventListener("click", this.onClick, true);
    doc.removeEventListener("input", this.onInput, true);
    doc.removeEventListener("wheel", this.onWheel, true);
    doc.addEventListener("click", this.onClick, true);
    doc.addEventListener("input", this.onInput, true);
    doc.addEventListener("wheel", this.onWheel, { capture: true, passive: false });
  }
}

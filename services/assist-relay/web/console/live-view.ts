import { EventType, type eventWithTime, IncrementalSource, Replayer } from "rrweb";
import type { ControlAction } from "../../src/protocol.js";
import { type FieldState, spliceOf } from "./field-edit.js";
import { keepSelectValues } from "./select-values.js";

type TextField = HTMLInputElement | HTMLTextAreaElement;
type KeyName = Extract<ControlAction, { kind: "key" }>["key"];
const sentKeys = new Set<string>(["Enter", "Tab", "Escape", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight"]);

// The rebuilt page lives in an iframe (another realm), so elements are told apart by name, not `instanceof`.
const untypable = new Set(["checkbox", "radio", "file", "button", "submit", "reset", "image", "color", "range", "hidden"]);
const isTextField = (el: Element): el is TextField =>
  el.localName === "textarea" || (el.localName === "input" && !untypable.has((el as HTMLInputElement).type));
const stateOf = (el: TextField): FieldState => ({ value: el.value, selectionStart: el.selectionStart, selectionEnd: el.selectionEnd });

/**
 * Rebuilds the operator's page from the rrweb stream (live mode) and, while
 * control is granted, turns the developer's clicks, typing and wheel in the
 * rebuilt page into control actions addressed by mirror node id.
 *
 * Typing becomes edits (which characters to replace), never the field's value:
 * a masked field reads `*****` here, and sending that would overwrite what the
 * operator typed. While the developer types in a field, the page's echoes of
 * that field are held back until the field loses focus, so the next edit is
 * measured against the developer's own latest state rather than a late echo.
 */
export class LiveView {
  private replayer: Replayer | undefined;
  private interactive = false;
  /** The field the developer is editing and its state just before the edit (from `beforeinput`). */
  private editing: { field: TextField; before: FieldState } | undefined;
  /** The latest held-back input event of the field the developer has focus in. */
  private heldEcho: eventWithTime | undefined;
  private stopSelectValues: (() => void) | undefined;

  constructor(
    private readonly root: HTMLElement,
    private readonly onAction: (a: ControlAction) => void,
    /** A developer action that cannot be sent, and why. */
    private readonly onRefused: (reason: string) => void,
    /** Where the developer points, in the operator's viewport (at most every 50 ms). */
    private readonly onPointer: (x: number, y: number) => void,
  ) {
    // Without control the rebuilt page takes no pointer events: the pointer is found over it, from here.
    root.addEventListener("mousemove", (ev) => {
      const frame = this.replayer?.iframe;
      if (!frame) return;
      const box = frame.getBoundingClientRect();
      const scale = frame.offsetWidth ? box.width / frame.offsetWidth : 1;
      this.pointAt((ev.clientX - box.left) / scale, (ev.clientY - box.top) / scale);
    });
  }

  add(events: eventWithTime[]): void {
    for (const event of events) {
      // Start (or restart, after a fresh snapshot) at a Meta event; incremental events before one have no page to apply to.
      if (!this.replayer && event.type !== EventType.Meta) continue;
      if (!this.replayer) this.start();
      // A full snapshot numbers the nodes afresh: a held echo would address another node.
      if (event.type === EventType.FullSnapshot) this.heldEcho = undefined;
      if (this.isEchoOfFocusedField(event)) {
        this.heldEcho = event;
        continue;
      }
      // Played on arrival: the operator's clock may differ from ours.
      this.replayer!.addEvent({ ...event, timestamp: Date.now() });
    }
  }

  /** Shows the operator's latest value of the field being edited (after the page refused an edit made on a stale view). */
  resync(): void {
    const held = this.heldEcho;
    this.heldEcho = undefined;
    if (held) this.replayer?.addEvent({ ...held, timestamp: Date.now() });
  }

  private isEchoOfFocusedField(event: eventWithTime): boolean {
    if (!this.interactive || event.type !== EventType.IncrementalSnapshot || event.data.source !== IncrementalSource.Input) return false;
    const focused = this.document?.activeElement;
    return !!focused && isTextField(focused) && this.replayer!.getMirror().getId(focused) === event.data.id;
  }

  private start(): void {
    this.replayer = new Replayer([], { root: this.root, liveMode: true, mouseTail: false, showWarning: false, triggerFocus: false });
    this.replayer.on("fullsnapshot-rebuilded", () => {
      this.wire();
      this.stopSelectValues?.();
      if (this.document) this.stopSelectValues = keepSelectValues(this.document);
    });
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
    if (!on) this.resync();
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

  private readonly onBeforeInput = (ev: InputEvent) => {
    if (!this.interactive) return;
    const target = ev.target as HTMLElement;
    if (isTextField(target)) {
      // The browser's undo stack here holds the view's states, not the page's: an undo would be measured against the wrong text.
      if (ev.inputType === "historyUndo" || ev.inputType === "historyRedo") {
        ev.preventDefault();
        this.onRefused("undo and redo are not sent to the operator's page; type the correction instead");
        return;
      }
      this.editing = { field: target, before: stateOf(target) };
    } else if (target.isContentEditable) {
      ev.preventDefault();
      this.onRefused("typing into rich-text (contenteditable) areas is not supported in remote control; ask the operator to type there");
    }
  };

  private readonly onInput = (ev: Event) => {
    if (!this.interactive) return;
    const target = ev.target as HTMLElement;
    const id = this.replayer!.getMirror().getId(target);
    if (id <= 0) return;
    if (target.localName === "select") {
      const selected = [...(target as HTMLSelectElement).options].filter((o) => o.selected).map((o) => o.index);
      this.onAction({ kind: "select", id, selected });
      return;
    }
    if (!isTextField(target)) return;
    const editing = this.editing;
    this.editing = undefined;
    if (editing?.field !== target) {
      this.onRefused("this change could not be located in the field, so it was not sent; click the field and type again");
      return;
    }
    const splice = spliceOf(editing.before, stateOf(target));
    if (splice) this.onAction({ kind: "edit", id, ...splice, length: editing.before.value.length });
  };

  private readonly onFocusOut = (ev: FocusEvent) => {
    if (isTextField(ev.target as Element)) this.resync();
  };

  /** Keys that are not text go to the page as key actions; typing travels as edits (see onInput). */
  private readonly onKeyDown = (ev: KeyboardEvent) => {
    if (!this.interactive || ev.ctrlKey || ev.metaKey || ev.altKey || !sentKeys.has(ev.key)) return;
    const target = ev.target as HTMLElement;
    // Enter in a textarea is a line break (an edit); arrows in a text field move the caret, and the page's handlers hear them too.
    if (ev.key === "Enter" && target.localName === "textarea") return;
    // Enter would submit the rebuilt form here, which the page does for real.
    if (ev.key === "Enter") ev.preventDefault();
    const id = this.replayer!.getMirror().getId(target);
    this.onAction({ kind: "key", key: ev.key as KeyName, shift: ev.shiftKey, ...(id > 0 ? { id } : {}) });
  };

  private lastPointer = 0;
  private pointAt(x: number, y: number): void {
    const now = Date.now();
    if (now - this.lastPointer < 50) return;
    this.lastPointer = now;
    this.onPointer(x, y);
  }

  /** In control, the rebuilt page has the pointer: its coordinates are the operator's viewport's. */
  private readonly onMouseMove = (ev: MouseEvent) => this.pointAt(ev.clientX, ev.clientY);

  private readonly onWheel = (ev: WheelEvent) => {
    if (!this.interactive) return;
    ev.preventDefault();
    this.onAction({ kind: "scroll", dx: ev.deltaX, dy: ev.deltaY });
  };

  /** Each full snapshot rebuilds the document (document.open drops its listeners), so they are attached again every time. */
  private wire(): void {
    const doc = this.replayer?.iframe.contentDocument;
    if (!doc) return;
    const listeners = [
      ["click", this.onClick],
      ["beforeinput", this.onBeforeInput],
      ["input", this.onInput],
      ["focusout", this.onFocusOut],
      ["keydown", this.onKeyDown],
      ["mousemove", this.onMouseMove],
    ] as const;
    for (const [type, listener] of listeners) {
      doc.removeEventListener(type, listener as EventListener, true);
      doc.addEventListener(type, listener as EventListener, true);
    }
    doc.removeEventListener("wheel", this.onWheel, true);
    doc.addEventListener("wheel", this.onWheel, { capture: true, passive: false });
  }
}

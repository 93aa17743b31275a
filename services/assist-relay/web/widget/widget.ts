// Record-only build of rrweb (no Replayer): the widget never replays.
import { record } from "@rrweb/record";
import type { eventWithTime } from "rrweb";
import type { ConsoleEntry, NetworkEntry, OpenedSession, ToWidget, WidgetMessage } from "../../src/protocol.js";
import { captureConsole } from "./console-capture.js";
import { bodyMasker, inputMasker } from "./masking.js";
import { captureNetwork } from "./network-capture.js";
import { ConsolePanel } from "./panel.js";
import { applyControl } from "./remote-control.js";
import { openReportForm } from "./report-form.js";

export interface WidgetOptions {
  /** Base URL of the relay, e.g. "https://assist.ops.example". */
  relay: string;
  /** Extra inputs whose values may be shown (on top of the relay's allow list). */
  unmaskedInputSelector?: string;
}

const button = (label: string, attr: string) =>
  `<button type="button" ${attr} style="display:block;width:100%;margin:3px 0;padding:6px 10px;font:13px sans-serif;cursor:pointer">${label}</button>`;

/**
 * The widget on the operator's page: a floating button to ask for remote
 * assistance or report a problem. During a session it streams the page
 * (rrweb), console and API calls to the relay, asks the operator before any
 * remote control, and shows a banner while control is granted.
 */
export class AssistWidget {
  private readonly root = document.createElement("div");
  private readonly banner = document.createElement("div");
  private readonly panel: ConsolePanel;
  private readonly consoleEntries: ConsoleEntry[] = [];
  private readonly networkEntries: NetworkEntry[] = [];
  private socket: WebSocket | undefined;
  private session: OpenedSession | undefined;
  private stopRecording: (() => void) | undefined;
  private pending: eventWithTime[] = [];
  private controlledBy: string | undefined;
  /** Reconnection attempts since the socket was last open. */
  private reconnects = 0;
  private maskInput = inputMasker(".assist-unmask");
  private maskBody = bodyMasker("password|passwd|pin|cvv|card|idno|token|secret", 4096);

  constructor(private readonly opts: WidgetOptions) {
    this.panel = new ConsolePanel((open) => this.send({ t: "panel", open }));
    // Captured from the start, so the developer also sees what happened before the call for help.
    captureConsole((e) => this.onConsole(e));
    captureNetwork(
      (e) => this.onNetwork(e),
      (body) => this.maskBody(body),
      opts.relay,
    );
  }

  mount(): void {
    // rr-block: the widget's own UI (key, consent, banner) is never streamed.
    this.root.id = "opsplane-assist";
    this.root.className = "rr-block";
    this.root.setAttribute("style", "position:fixed;right:12px;bottom:12px;z-index:2147483647;width:240px;font:13px sans-serif");
    this.root.innerHTML = `<div data-menu style="display:none;background:#fff;color:#111;border:1px solid #999;border-radius:6px;padding:8px;margin-bottom:6px">
        ${button("Request remote assistance", "data-assist")}${button("Report a problem", "data-report")}${button("Console", "data-console")}
        <div data-session style="display:none"><div>Connection key</div><div data-key style="font:bold 20px monospace;letter-spacing:1px"></div>
        <div data-expiry style="color:#555"></div><div data-status>Waiting for a developer…</div>${button("New key", "data-new-key")}${button("End assistance", "data-end")}</div>
        <div data-consent style="display:none;border-top:1px solid #ccc;margin-top:6px;padding-top:6px"><div data-consent-text></div>${button("Allow control", "data-allow")}${button("Refuse", "data-refuse")}</div>
        <div data-error style="color:#b00"></div></div>
      <button type="button" data-toggle style="float:right;border-radius:20px;padding:8px 14px;background:#1565c0;color:#fff;border:0;cursor:pointer">Help</button>`;
    this.banner.className = "rr-block";
    this.banner.id = "opsplane-assist-banner";
    this.banner.setAttribute(
      "style",
      "position:fixed;top:0;left:0;right:0;z-index:2147483647;background:#c62828;color:#fff;font:14px sans-serif;padding:6px 12px;display:none",
    );
    this.banner.innerHTML = `<span data-text></span> <button type="button" data-take-back>Take back control</button>`;
    document.body.append(this.panel.el, this.root, this.banner);

    const $ = <E extends Element = HTMLElement>(sel: string) => this.root.querySelector<E & HTMLElement>(sel)!;
    $("[data-toggle]").addEventListener("click", () => {
      const menu = $("[data-menu]");
      menu.style.display = menu.style.display === "none" ? "block" : "none";
    });
    $("[data-assist]").addEventListener("click", () => void this.requestAssistance());
    $("[data-report]").addEventListener("click", () =>
      openReportForm(this.root, {
        relay: this.opts.relay,
        session: () => (this.session ? { id: this.session.sessionId, token: this.session.widgetToken } : undefined),
        maskInput: (t, el) => this.maskInput(t, el),
      }),
    );
    $("[data-console]").addEventListener("click", () => this.panel.toggle(!this.panel.open));
    $("[data-new-key]").addEventListener("click", () => void this.renewKey());
    $("[data-end]").addEventListener("click", () => this.end());
    $("[data-allow]").addEventListener("click", () => this.answerControl(true));
    $("[data-refuse]").addEventListener("click", () => this.answerControl(false));
    this.banner.querySelector("[data-take-back]")!.addEventListener("click", () => this.takeBackControl());
  }

  private el(sel: string): HTMLElement {
    return this.root.querySelector<HTMLElement>(sel)!;
  }

  private async requestAssistance(): Promise<void> {
    if (this.session) return;
    const response = await fetch(`${this.opts.relay}/assist/sessions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pageUrl: location.href }),
    });
    const body = (await response.json()) as OpenedSession & { message?: string };
    if (!response.ok) {
      this.el("[data-error]").textContent = `Remote assistance is not available: ${body.message}`;
      return;
    }
    this.session = body;
    const extra = this.opts.unmaskedInputSelector;
    const selector = [body.policy.unmaskedInputSelector, extra].filter(Boolean).join(", ");
    this.maskInput = inputMasker(selector);
    this.el("[data-session]").style.display = "block";
    this.showKey(body.key, body.keyExpiresAt);
    void this.connect(body);
  }

  private showKey(key: string, expiresAt: string): void {
    this.el("[data-key]").textContent = key;
    this.el("[data-expiry]").textContent = `Valid until ${new Date(expiresAt).toLocaleTimeString()}; tell it to the developer only.`;
  }

  private async renewKey(): Promise<void> {
    if (!this.session) return;
    const response = await fetch(`${this.opts.relay}/assist/sessions/${this.session.sessionId}/key`, {
      method: "POST",
      headers: { "x-assist-token": this.session.widgetToken },
    });
    const body = (await response.json()) as { key: string; keyExpiresAt: string; message?: string };
    if (response.ok) this.showKey(body.key, body.keyExpiresAt);
    else this.el("[data-error]").textContent = body.message ?? "could not get a new key";
  }

  /**
   * Opens the session's socket with a single-use ticket (the session token never goes into a URL)
   * and opens it again when the connection breaks. The relay allows one socket per session: until
   * it has dropped the broken one (unanswered heartbeats) it refuses the new one with 4409, and the
   * page tries again, waiting 1 s, 2 s, 4 s … up to 30 s.
   */
  private async connect(session: OpenedSession): Promise<void> {
    if (this.session !== session) return;
    let ticket: { ticket?: string; message?: string };
    try {
      const response = await fetch(`${this.opts.relay}/assist/sessions/${session.sessionId}/widget-ticket`, {
        method: "POST",
        headers: { "x-assist-token": session.widgetToken },
      });
      ticket = (await response.json()) as typeof ticket;
      // Refused for good (the session ended, the token is not accepted): nothing to reconnect to.
      if (response.status >= 400 && response.status < 500) {
        this.el("[data-error]").textContent = `Remote assistance is not connected: ${ticket.message}`;
        return;
      }
      if (!response.ok || !ticket.ticket) throw new Error(ticket.message);
    } catch {
      this.reconnectLater(session, "Connection lost; reconnecting…");
      return;
    }
    const url = new URL("/assist/ws/widget", this.opts.relay);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("ticket", ticket.ticket);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.reconnects > 0) this.el("[data-status]").textContent = "Connected again";
      this.reconnects = 0;
      this.startRecording(session);
    });
    socket.addEventListener("message", (ev) => this.onMessage(JSON.parse(String(ev.data)) as ToWidget));
    socket.addEventListener("close", (ev) => {
      this.stopRecording?.();
      this.stopRecording = undefined;
      this.setControl(undefined);
      // 1000: the session ended (by the relay, or by this page); anything else is a broken connection.
      if (ev.code !== 1000)
        this.reconnectLater(
          session,
          ev.code === 4409 ? "Reconnecting… (another connection to this session is still open)" : "Connection lost; reconnecting…",
        );
    });
  }

  private reconnectLater(session: OpenedSession, status: string): void {
    if (this.session !== session) return;
    this.el("[data-status]").textContent = status;
    setTimeout(() => void this.connect(session), Math.min(30_000, 1000 * 2 ** this.reconnects++));
  }

  private startRecording(session: OpenedSession): void {
    this.maskBody = bodyMasker(session.policy.maskedBodyKeys, session.policy.networkBodyMaxBytes);
    this.stopRecording = record({
      emit: (event) => this.queue(event),
      maskAllInputs: true,
      maskInputFn: (text, el) => this.maskInput(text, el),
      maskTextSelector: "[data-assist-mask]",
      blockClass: "rr-block",
      sampling: { mousemove: 50, scroll: 100 },
    });
  }

  /** Batches rrweb events per animation-free tick (about 20 ms), so a burst of mutations is one message. */
  private queue(event: eventWithTime): void {
    this.pending.push(event);
    if (this.pending.length === 1) setTimeout(() => this.flush(), 20);
  }

  private flush(): void {
    const events = this.pending;
    this.pending = [];
    if (events.length) this.send({ t: "rrweb", events });
  }

  private send(m: WidgetMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(m));
  }

  private onConsole(e: ConsoleEntry): void {
    this.keep(this.consoleEntries, e);
    this.panel.addConsole(e);
    this.send({ t: "console", entries: [e] });
  }

  private onNetwork(e: NetworkEntry): void {
    this.keep(this.networkEntries, e);
    this.panel.addNetwork(e);
    this.send({ t: "network", entries: [e] });
  }

  private keep<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > 200) list.shift();
  }

  private onMessage(m: ToWidget): void {
    switch (m.t) {
      case "developer-joined":
        this.el("[data-status]").textContent = `${m.developer} is watching this page`;
        // The console and calls so far, then live ones.
        if (this.consoleEntries.length) this.send({ t: "console", entries: this.consoleEntries });
        if (this.networkEntries.length) this.send({ t: "network", entries: this.networkEntries });
        this.send({ t: "panel", open: this.panel.open });
        return;
      case "developer-left":
        this.el("[data-status]").textContent = `${m.developer} left`;
        this.setControl(undefined);
        return;
      case "snapshot-request":
        this.flush();
        record.takeFullSnapshot(true);
        return;
      case "control-request":
        this.el("[data-menu]").style.display = "block";
        this.el("[data-consent]").style.display = "block";
        this.el("[data-consent-text]").textContent = `${m.developer} asks to control this page (clicks, typing, scrolling).`;
        this.el("[data-consent]").dataset.developer = m.developer;
        return;
      case "control-release":
        this.setControl(undefined);
        return;
      case "control": {
        // The relay only forwards control while granted; the widget checks again, as it is the operator's word.
        const refused = this.controlledBy ? applyControl(m.action, this.root) : "the operator has not granted control";
        if (!refused) return;
        // The page's changes so far go first: the developer's view shows them again on the refusal.
        this.flush();
        this.send({ t: "control-refused", reason: refused });
        return;
      }
      case "panel":
        this.panel.toggle(m.open, true);
        return;
      case "session-ended":
        // Ended by the relay (no activity for too long, or too old): the socket closes and recording stops.
        this.session = undefined;
        this.setControl(undefined);
        this.el("[data-session]").style.display = "none";
        this.el("[data-error]").textContent =
          m.by === "idle" ? "Remote assistance ended after a period without activity." : "Remote assistance has ended.";
        return;
      case "error":
        this.el("[data-error]").textContent = m.reason;
        return;
    }
  }

  private answerControl(granted: boolean): void {
    const consent = this.el("[data-consent]");
    consent.style.display = "none";
    this.send({ t: "control-response", granted });
    if (granted) this.setControl(consent.dataset.developer);
  }

  private takeBackControl(): void {
    this.send({ t: "control-revoke" });
    this.setControl(undefined);
  }

  private setControl(developer: string | undefined): void {
    this.controlledBy = developer;
    this.banner.style.display = developer ? "block" : "none";
    (this.banner.querySelector("[data-text]") as HTMLElement).textContent = developer ? `Remote control granted to ${developer}.` : "";
  }

  private end(): void {
    this.send({ t: "end" });
    this.socket?.close();
    this.session = undefined;
    this.el("[data-session]").style.display = "none";
  }
}

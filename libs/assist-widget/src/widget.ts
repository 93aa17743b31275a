// Record-only build of rrweb (no Replayer): the widget never replays.
import { record } from "@rrweb/record";
import type { eventWithTime } from "rrweb";
import { captureConsole } from "./console-capture.js";
import { applyCss } from "./css.js";
import { DeveloperPointer } from "./developer-pointer.js";
import { inputMasker, isShown, textMasker } from "./masking.js";
import { captureNetwork } from "./network-capture.js";
import { ConsolePanel } from "./panel.js";
import type { CapturePolicy, ConsoleEntry, NetworkEntry, OpenedSession, ToWidget, WidgetMessage } from "./protocol.js";
import { applyControl } from "./remote-control.js";
import { openReportForm } from "./report-form.js";
import { createSanitiser, maskedSelectValue, type Sanitiser } from "./sanitiser.js";
import { savedSession } from "./saved-session.js";

export interface WidgetOptions {
  /** Base URL of the relay, e.g. "https://assist.ops.example". */
  relay: string;
  /** Extra inputs whose values may be shown (on top of the relay's allow list). */
  unmaskedInputSelector?: string;
  /**
   * The page's own sanitisers, run on each captured API call and console line before the relay's rules
   * (which they cannot undo): return the entry changed, or null to leave it out. With the script tag,
   * set them on `window.opsplaneAssist` before the script runs.
   */
  sanitiseNetwork?: (entry: NetworkEntry) => NetworkEntry | null;
  sanitiseConsole?: (entry: ConsoleEntry) => ConsoleEntry | null;
}

/**
 * Every call to the relay gives up after this: a network that drops silently would otherwise hold a reconnection
 * (or _End assistance_) for the browser's own timeout, about a minute, where the page is meant to be back within
 * about two heartbeats.
 */
const requestTimeoutMs = 5_000;

const button = (label: string, attr: string) =>
  `<button type="button" ${attr} data-css="display:block;width:100%;margin:3px 0;padding:6px 10px;font:13px sans-serif;cursor:pointer">${label}</button>`;

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
  private readonly pointer = new DeveloperPointer();
  private readonly consoleEntries: ConsoleEntry[] = [];
  private readonly networkEntries: NetworkEntry[] = [];
  private socket: WebSocket | undefined;
  private session: OpenedSession | undefined;
  private stopRecording: (() => void) | undefined;
  private pending: eventWithTime[] = [];
  /** While a report takes its snapshot from the running recording, the events it gets. */
  private capture: eventWithTime[] | undefined;
  private controlledBy: string | undefined;
  /** The developers watching now, as the relay announced them. */
  private readonly watchers = new Set<string>();
  /** Fires when the shown key expires. */
  private keyExpiry: ReturnType<typeof setTimeout> | undefined;
  /** Reconnection attempts since the socket was last open. */
  private reconnects = 0;
  /** The relay's masking settings and the sanitiser made from them; until they arrive nothing is sent and no body is read. */
  private policy: CapturePolicy | undefined;
  private sanitiser: Sanitiser | undefined;
  /**
   * The recording's events masked as one stream: it remembers the masked nodes of the last full snapshot, so a
   * later change to one (an attribute, a node added inside it) is masked here too, not only by the relay.
   */
  private recordingMasker: ReturnType<Sanitiser["rrwebStream"]> | undefined;

  constructor(private readonly opts: WidgetOptions) {
    this.panel = new ConsolePanel((open) => this.send({ t: "panel", open }));
    // Captured from the start, so the developer also sees what happened before the call for help.
    captureConsole((e) => {
      const kept = opts.sanitiseConsole ? opts.sanitiseConsole(e) : e;
      if (kept) this.onConsole(kept);
    });
    captureNetwork(
      (e) => {
        const kept = opts.sanitiseNetwork ? opts.sanitiseNetwork(e) : e;
        if (kept) this.onNetwork(kept);
      },
      (url) => this.sanitiser?.capturesBody(url) ?? false,
      opts.relay,
    );
    void this.loadPolicy();
  }

  /** The relay's masking settings, so calls made before a session are captured and masked as during one. */
  private async loadPolicy(): Promise<void> {
    try {
      const response = await fetch(`${this.opts.relay}/assist/policy`, { signal: AbortSignal.timeout(requestTimeoutMs) });
      if (response.ok && !this.policy) this.usePolicy((await response.json()) as CapturePolicy);
    } catch {
      // The relay is unreachable now: opening a session brings the policy.
    }
  }

  private usePolicy(policy: CapturePolicy): void {
    this.policy = policy;
    this.sanitiser = createSanitiser(policy.sanitiser);
    this.recordingMasker = this.sanitiser.rrwebStream();
  }

  private get unmaskedSelector(): string {
    return [this.policy?.unmaskedInputSelector, this.opts.unmaskedInputSelector].filter(Boolean).join(", ");
  }

  private maskInput(text: string, el: HTMLElement): string {
    if (!this.sanitiser) return el.localName === "select" ? maskedSelectValue : text.replace(/[^\n]/g, "*");
    return inputMasker(this.unmaskedSelector, this.sanitiser)(text, el);
  }

  /**
   * rrweb leaves out the chosen option of a masked list in snapshots, but passes on a page's own change of an
   * option's `selected` attribute (a list re-rendered with the operator's choice marked): left out here too.
   */
  private hideChosenOptions(events: eventWithTime[]): void {
    for (const event of events) {
      if (event.type !== 3 || event.data.source !== 0) continue;
      for (const change of event.data.attributes) {
        if (!("selected" in change.attributes)) continue;
        const option = record.mirror.getNode(change.id);
        const list = option instanceof HTMLOptionElement ? option.closest("select") : null;
        if (list && !(this.sanitiser && isShown(list, this.unmaskedSelector, this.sanitiser))) delete change.attributes.selected;
      }
    }
  }

  mount(): void {
    // rr-block: the widget's own UI (key, consent, banner) is never streamed.
    this.root.id = "opsplane-assist";
    this.root.className = "rr-block";
    this.root.style.cssText = "position:fixed;right:12px;bottom:12px;z-index:2147483647;width:240px;font:13px sans-serif";
    this.root.innerHTML = `<div data-menu data-css="display:none;background:#fff;color:#111;border:1px solid #999;border-radius:6px;padding:8px;margin-bottom:6px">
        ${button("Request remote assistance", "data-assist")}${button("Report a problem", "data-report")}${button("Console", "data-console")}
        <div data-session data-css="display:none"><div>Connection key</div><div data-key data-css="font:bold 20px monospace;letter-spacing:1px"></div>
        <div data-expiry data-css="color:#555"></div><div data-status>Waiting for a developer…</div>${button("New key", "data-new-key")}${button("End assistance", "data-end")}</div>
        <div data-consent data-css="display:none;border-top:1px solid #ccc;margin-top:6px;padding-top:6px"><div data-consent-text></div>${button("Allow control", "data-allow")}${button("Refuse", "data-refuse")}</div>
        <div data-error data-css="color:#b00"></div></div>
      <button type="button" data-toggle data-css="float:right;border-radius:20px;padding:8px 14px;background:#1565c0;color:#fff;border:0;cursor:pointer">Help</button>`;
    applyCss(this.root);
    this.banner.className = "rr-block";
    this.banner.id = "opsplane-assist-banner";
    this.banner.style.cssText =
      "position:fixed;top:0;left:0;right:0;z-index:2147483647;background:#c62828;color:#fff;font:14px sans-serif;padding:6px 12px;display:none";
    this.banner.innerHTML = `<span data-text></span> <button type="button" data-take-back>Take back control</button>`;
    document.body.append(this.panel.el, this.root, this.banner, this.pointer.el);
    // A hidden tab (the operator switched away) is not watched over: control ends, as taking it back would.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden" && this.controlledBy) this.takeBackControl("the operator's tab was hidden");
    });

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
        snapshot: () => this.pageSnapshot(),
      }),
    );
    $("[data-console]").addEventListener("click", () => this.panel.toggle(!this.panel.open));
    $("[data-new-key]").addEventListener("click", () => void this.renewKey());
    $("[data-end]").addEventListener("click", () => this.end());
    $("[data-allow]").addEventListener("click", () => this.answerControl(true));
    $("[data-refuse]").addEventListener("click", () => this.answerControl(false));
    this.banner.querySelector("[data-take-back]")!.addEventListener("click", () => this.takeBackControl());
    // A page load in the middle of a session (a navigation, a reload) picks it up again.
    const resumed = savedSession.load();
    if (resumed) {
      // Open, so the operator sees at once that this page is shared too.
      $("[data-menu]").style.display = "block";
      this.startSession(resumed);
    }
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
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    const body = (await response.json()) as OpenedSession & { message?: string };
    if (!response.ok) {
      this.el("[data-error]").textContent = `Remote assistance is not available: ${body.message}`;
      return;
    }
    this.startSession(body);
  }

  private startSession(session: OpenedSession): void {
    this.session = session;
    savedSession.save(session);
    this.usePolicy(session.policy);
    this.el("[data-session]").style.display = "block";
    this.showKey(session.key, session.keyExpiresAt);
    void this.connect(session);
  }

  /** The session is over (ended here or by the relay, or refused for good): nothing to resume. */
  private forgetSession(): void {
    this.session = undefined;
    savedSession.forget();
    clearTimeout(this.keyExpiry);
    this.setControl(undefined);
    this.el("[data-session]").style.display = "none";
  }

  private showKey(key: string, expiresAt: string): void {
    this.el("[data-key]").textContent = key;
    this.el("[data-key]").style.textDecoration = "";
    this.el("[data-expiry]").textContent = `Valid until ${new Date(expiresAt).toLocaleTimeString()}; tell it to the developer only.`;
    this.el("[data-status]").textContent = "Waiting for a developer…";
    clearTimeout(this.keyExpiry);
    this.keyExpiry = setTimeout(
      () => this.keyUnusable("This key has expired; get a new key for the developer."),
      Date.parse(expiresAt) - Date.now(),
    );
  }

  /**
   * The key can no longer connect anyone (expired, or blocked after wrong tries): the operator is offered a
   * new one, for the first developer or, while some watch, for another.
   */
  private keyUnusable(why: string): void {
    this.el("[data-key]").style.textDecoration = "line-through";
    this.el("[data-expiry]").textContent = this.watchers.size ? why : "";
    if (!this.watchers.size) this.el("[data-status]").textContent = why;
  }

  private async renewKey(): Promise<void> {
    if (!this.session) return;
    const response = await fetch(`${this.opts.relay}/assist/sessions/${this.session.sessionId}/key`, {
      method: "POST",
      headers: { "x-assist-token": this.session.widgetToken },
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    const body = (await response.json()) as { key: string; keyExpiresAt: string; message?: string };
    if (response.ok && this.session) {
      this.session = { ...this.session, key: body.key, keyExpiresAt: body.keyExpiresAt };
      savedSession.save(this.session);
      this.showKey(body.key, body.keyExpiresAt);
    } else this.el("[data-error]").textContent = body.message ?? "could not get a new key";
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
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
      ticket = (await response.json()) as typeof ticket;
      // Refused for good (the session ended, the token is not accepted): nothing to reconnect to.
      if (response.status >= 400 && response.status < 500) {
        if (this.session === session) this.forgetSession();
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
      this.startRecording(this.sanitiser!);
    });
    socket.addEventListener("message", (ev) => this.onMessage(JSON.parse(String(ev.data)) as ToWidget));
    socket.addEventListener("close", (ev) => {
      this.stopRecording?.();
      this.stopRecording = undefined;
      this.setControl(undefined);
      this.pointer.hide();
      // Re-announced by the relay once the page is connected again.
      this.watchers.clear();
      // 1000: the session ended (by the relay, or by this page); anything else, 1001 from a relay shutting down
      // included, is a broken connection: the page reconnects to the same session, maybe on another replica.
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

  private startRecording(sanitiser: Sanitiser): void {
    this.stopRecording = record({
      emit: (event) => this.queue(event),
      ...this.recordOptions(sanitiser),
      sampling: { mousemove: 50, scroll: 100 },
    });
  }

  private recordOptions(sanitiser: Sanitiser | undefined) {
    return {
      maskAllInputs: true,
      maskInputFn: (text: string, el: HTMLElement) => this.maskInput(text, el),
      // Every text node goes through maskTextFn: the sanitiser masks card, ID and mobile numbers and addresses in it.
      maskTextSelector: "*",
      maskTextFn: sanitiser ? textMasker(sanitiser) : (text: string) => text.replace(/\S/g, "*"),
      blockClass: "rr-block",
    };
  }

  /**
   * The page for a problem report, masked as the stream is: the Meta and full snapshot events the recording
   * takes (a fresh one, which a watching developer gets too), or, with no session, a recording started and
   * stopped at once. One copy of rrweb's snapshot code serves both, not a second library.
   */
  private pageSnapshot(): eventWithTime[] | undefined {
    // Without the relay's masking settings (it has not answered yet) no snapshot leaves the page.
    if (!this.sanitiser) return undefined;
    const events: eventWithTime[] = [];
    if (this.stopRecording) {
      this.capture = events;
      record.takeFullSnapshot(true);
      this.capture = undefined;
    } else record({ emit: (e) => events.push(e), ...this.recordOptions(this.sanitiser) })?.();
    // 4: Meta (URL, viewport), 2: FullSnapshot.
    return this.sanitiser.rrweb(events.filter((e) => e.type === 4 || e.type === 2));
  }

  /** Batches rrweb events per animation-free tick (about 20 ms), so a burst of mutations is one message. */
  private queue(event: eventWithTime): void {
    this.capture?.push(event);
    this.pending.push(event);
    if (this.pending.length === 1) setTimeout(() => this.flush(), 20);
  }

  private flush(): void {
    const events = this.pending;
    this.pending = [];
    // Text nodes were masked as rrweb read them; attributes (a link's ?access_token=) and the page URL are masked here.
    if (!events.length || !this.recordingMasker) return;
    this.hideChosenOptions(events);
    this.send({ t: "rrweb", events: this.recordingMasker(events) });
  }

  private send(m: WidgetMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(m));
  }

  /** Console lines and calls leave the page masked, the history sent to a developer who joins as much as live ones. */
  private sendEntries(t: "console", entries: ConsoleEntry[]): void;
  private sendEntries(t: "network", entries: NetworkEntry[]): void;
  private sendEntries(t: "console" | "network", entries: ConsoleEntry[] | NetworkEntry[]): void {
    const s = this.sanitiser;
    if (!s || !entries.length) return;
    if (t === "console") this.send({ t, entries: (entries as ConsoleEntry[]).map(s.console) });
    else this.send({ t, entries: (entries as NetworkEntry[]).map(s.network) });
  }

  private onConsole(e: ConsoleEntry): void {
    this.keep(this.consoleEntries, e);
    this.panel.addConsole(e);
    this.sendEntries("console", [e]);
  }

  private onNetwork(e: NetworkEntry): void {
    this.keep(this.networkEntries, e);
    this.panel.addNetwork(e);
    this.sendEntries("network", [e]);
  }

  private keep<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > 200) list.shift();
  }

  private onMessage(m: ToWidget): void {
    switch (m.t) {
      case "developer-joined":
        this.watchers.add(m.developer);
        this.showWatchers();
        // The console and calls so far, then live ones.
        this.sendEntries("console", this.consoleEntries);
        this.sendEntries("network", this.networkEntries);
        this.send({ t: "panel", open: this.panel.open });
        return;
      case "developer-left":
        this.pointer.hide(m.developer);
        this.watchers.delete(m.developer);
        if (this.watchers.size) this.showWatchers();
        else this.el("[data-status]").textContent = `${m.developer} left`;
        if (this.controlledBy === m.developer) this.setControl(undefined);
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
        if (m.developer === this.controlledBy) this.setControl(undefined);
        return;
      case "control": {
        // The relay only forwards control while granted; the widget checks again, as it is the operator's word.
        const refused =
          this.controlledBy && m.developer === this.controlledBy
            ? applyControl(m.action, this.root)
            : "the operator has not granted control";
        if (!refused) return;
        // The page's changes so far go first: the developer's view shows them again on the refusal.
        this.flush();
        this.send({ t: "control-refused", reason: refused });
        return;
      }
      case "panel":
        this.panel.toggle(m.open, true);
        return;
      case "pointer":
        this.pointer.move(m.developer, m.x, m.y);
        return;
      case "session-ended":
        // Ended by the relay (no activity for too long, or too old) or from this page: the socket closes and recording stops.
        this.forgetSession();
        this.el("[data-error]").textContent =
          m.by === "idle" ? "Remote assistance ended after a period without activity." : "Remote assistance has ended.";
        return;
      case "key-blocked":
        this.keyUnusable("This key was blocked after too many wrong tries; get a new key for the developer.");
        return;
      case "error":
        this.el("[data-error]").textContent = m.reason;
        return;
    }
  }

  /** Who sees this page, always true: set from the relay's joins and leaves, cleared when the socket drops. */
  private showWatchers(): void {
    const names = [...this.watchers];
    this.el("[data-status]").textContent =
      names.length === 1
        ? `${names[0]} is watching this page`
        : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are watching this page`;
  }

  private answerControl(granted: boolean): void {
    const consent = this.el("[data-consent]");
    consent.style.display = "none";
    this.send({ t: "control-response", granted });
    if (granted) this.setControl(consent.dataset.developer);
  }

  private takeBackControl(reason?: string): void {
    this.send(reason ? { t: "control-revoke", reason } : { t: "control-revoke" });
    this.setControl(undefined);
  }

  private setControl(developer: string | undefined): void {
    this.controlledBy = developer;
    this.banner.style.display = developer ? "block" : "none";
    (this.banner.querySelector("[data-text]") as HTMLElement).textContent = developer ? `Remote control granted to ${developer}.` : "";
  }

  /**
   * Ends the session over HTTP, not over the socket, so it reaches the relay while the socket is down
   * (reconnecting); tried again, 1 s, 2 s, 4 s … apart, while the relay cannot be reached.
   */
  private end(): void {
    const session = this.session;
    if (!session) return;
    this.forgetSession();
    this.socket?.close(1000, "session ended");
    const attempt = (n: number): void => {
      fetch(`${this.opts.relay}/assist/sessions/${session.sessionId}/end`, {
        method: "POST",
        headers: { "x-assist-token": session.widgetToken },
        keepalive: true,
        signal: AbortSignal.timeout(requestTimeoutMs),
      }).then(
        (response) => {
          if (response.status >= 500 && n < 6) setTimeout(() => attempt(n + 1), 1000 * 2 ** n);
        },
        () => n < 6 && setTimeout(() => attempt(n + 1), 1000 * 2 ** n),
      );
    };
    attempt(0);
  }
}

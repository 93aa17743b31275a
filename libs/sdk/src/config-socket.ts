import type { SdkLogger } from "./contracts.js";
import { OnceLog } from "./logger.js";
import { type ChangesMessage, isGarbage, parseServerMessage } from "./protocol.js";
import { backoffDelay } from "./retry.js";
import { NetSocket } from "./transport/net-socket.js";

export interface ConfigSocketOptions {
  /** config-center's base URL (http or https). */
  baseUrl: string;
  /** From the registration: `/config/v1/instances/{id}/socket`. */
  socketPath: string;
  /** The version this instance has: sent on every (re)connection, so config-center sends what it missed. */
  version(): number;
  token(): Promise<string>;
  renewToken(): Promise<string>;
  heartbeatIntervalMs: number;
  /** No message from config-center this long (pongs included): the connection is dead, open another. */
  heartbeatTimeoutMs: number;
  handshakeTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Applies a changes message; the acknowledgement is sent once it resolves. */
  onChanges(message: ChangesMessage): Promise<void>;
  /** The connection opened (true) or was lost (false): what `sdk.connected` and `sdk.state` follow. */
  onConnection(open: boolean): void;
  /** config-center will not take this instance any more (app disabled, replaced, refused): no more retries. */
  onStopped(why: { code: number; reason: string }): void;
  log: SdkLogger;
}

/** Close codes after which reconnecting cannot help (config-center's README, "Instance protocol"). */
const final = new Map<number, string>([[4003, "the app is disabled at config-center"]]);

/**
 * The long connection to config-center (seed steps 7, 10, 15): heartbeats, pushed changes applied
 * in order and acknowledged, and reconnection with the version in hand (so nothing is missed) after
 * exponential backoff with full jitter. 1001 (config-center shutting down) reconnects at once;
 * 4001 (credentials changed) gets a new token first; 4003 and 4009 stop. A message that is not
 * the protocol's is logged once and ignored.
 */
export class ConfigSocket {
  private ws: NetSocket | undefined;
  private attempt = 0;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private heardAt = 0;
  private newTokenFirst = false;
  /** Changes messages are applied one after another, each acknowledged after it was applied. */
  private applying: Promise<void> = Promise.resolve();
  private readonly link: OnceLog;
  private readonly garbageSeen = new Set<string>();
  private readonly errorsSeen = new Set<string>();
  /** When a 4009 last closed the socket: a second one within a minute stops reconnecting. */
  private replacedAt: number | undefined;
  /** How many times the socket opened; the first opening is the connection, later ones reconnections. */
  opened = 0;

  constructor(private readonly o: ConfigSocketOptions) {
    this.link = new OnceLog(o.log);
  }

  get connected(): boolean {
    return this.ws?.isOpen === true;
  }

  start(): void {
    void this.connect();
  }

  /** Closes the connection for good (graceful: config-center marks the instance offline at once). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    const ws = this.ws;
    if (ws && !ws.isClosed) {
      ws.close(1000, "instance closing");
      const force = setTimeout(() => ws.terminate(), 2_000);
      await ws.closed;
      clearTimeout(force);
    }
    await this.applying;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    let token: string;
    try {
      token = this.newTokenFirst ? await this.o.renewToken() : await this.o.token();
      this.newTokenFirst = false;
    } catch (err) {
      this.link.problem(`token:${(err as Error).message}`, `config socket: no token (${(err as Error).message}); retrying`);
      return this.retry();
    }
    if (this.closed) return;
    const url = new URL(`${this.o.socketPath}?version=${this.o.version()}`, this.o.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    /** What this connection heard before its close: a refused handshake, an error. */
    const heard: { refusedWith?: number; failure?: string } = {};
    const ws: NetSocket = new NetSocket(
      url,
      { headers: { "x-config-token": token }, handshakeTimeoutMs: this.o.handshakeTimeoutMs },
      {
        refused: (status) => {
          heard.refusedWith = status;
        },
        // Told with the close that always follows, so one outage is one line however it shows.
        error: (message) => {
          heard.failure = message;
        },
        open: () => {
          this.opened++;
          this.heardAt = Date.now();
          clearInterval(this.heartbeat);
          this.heartbeat = setInterval(() => this.beat(ws), this.o.heartbeatIntervalMs);
          this.heartbeat.unref();
          this.o.onConnection(true);
        },
        message: (text, binary) => {
          this.heardAt = Date.now();
          this.received(ws, text, binary);
        },
        close: (code, reason) => this.lost(ws, code, reason, heard),
      },
    );
    this.ws = ws;
  }

  private lost(ws: NetSocket, code: number, reason: string, heard: { refusedWith?: number; failure?: string }): void {
    if (ws !== this.ws) return;
    clearInterval(this.heartbeat);
    if (this.closed) return;
    this.o.onConnection(false);
    if (heard.refusedWith !== undefined) {
      this.refused(heard.refusedWith);
      return;
    }
    // 4009 once: reconnect at once. Replicas number connections in separate transactions, so a
    // replacement can be announced out of order; a second 4009 within a minute is another process
    // with this instance id, which then keeps it.
    const replaced = code === 4009 && this.replacedAt !== undefined && Date.now() - this.replacedAt < 60_000;
    const stop = replaced ? "a newer connection of this instance replaced this one twice within a minute" : final.get(code);
    if (stop) {
      this.closed = true;
      this.o.log.error(`config socket closed for good (${code}): ${stop}${reason ? ` (${reason})` : ""}; not reconnecting`, { code });
      this.o.onStopped({ code, reason: stop });
      return;
    }
    const why = reason || heard.failure;
    this.link.problem(`close:${code}`, `config socket closed (${code}${why ? `: ${why}` : ""}); reconnecting`, { code });
    if (code === 4001) this.newTokenFirst = true;
    if (code === 4009) this.replacedAt = Date.now();
    if (code === 1001 || code === 4009) {
      // config-center is shutting down (a rollout): another replica takes the connection now.
      this.attempt = 0;
      return void this.connect();
    }
    this.retry();
  }

  /** A refused handshake: 401 gets a new token; 403 and 404 will not change by retrying. */
  private refused(status: number): void {
    if (status === 403 || status === 404) {
      this.closed = true;
      const reason =
        status === 403
          ? "refused (403): the app is disabled or may not act for this environment"
          : "refused (404): config-center does not know this instance";
      this.o.log.error(`config socket ${reason}; not reconnecting`, { status });
      this.o.onStopped({ code: status, reason });
      return;
    }
    if (status === 401) this.newTokenFirst = true;
    this.link.problem(`refused:${status}`, `config socket handshake answered HTTP ${status} instead of an upgrade; retrying`, { status });
    this.retry();
  }

  private retry(): void {
    if (this.closed) return;
    const delay = backoffDelay(this.attempt++, this.o.retryBaseMs, this.o.retryMaxMs);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
    this.retryTimer.unref();
  }

  private beat(ws: NetSocket): void {
    if (Date.now() - this.heardAt > this.o.heartbeatTimeoutMs) {
      this.link.problem("silent", `config socket: nothing from config-center for ${this.o.heartbeatTimeoutMs} ms; reconnecting`);
      ws.terminate();
      return;
    }
    ws.send('{"t":"ping"}');
  }

  private received(ws: NetSocket, text: string, isBinary: boolean): void {
    const m = isBinary ? { garbage: "a binary frame" } : parseServerMessage(text);
    if (isGarbage(m)) {
      if (!this.garbageSeen.has(m.garbage))
        this.o.log.warn(`config socket: ignored a message that is ${m.garbage}: ${JSON.stringify(text.slice(0, 120))}`);
      this.garbageSeen.add(m.garbage);
      return;
    }
    if (m.t === "error") {
      const kind = m.reason.split(":")[0]!;
      if (!this.errorsSeen.has(kind)) this.o.log.warn(`config-center refused a socket message: ${m.reason}`);
      this.errorsSeen.add(kind);
      return;
    }
    if (m.t !== "changes") return;
    this.applying = this.applying.then(async () => {
      try {
        await this.o.onChanges(m);
      } catch (err) {
        this.o.log.error(`config socket: applying changes at version ${m.version} failed: ${(err as Error).message}`);
        return;
      }
      if (m.catchUp) {
        // A complete catch-up: this connection works, so the next failure starts the backoff again.
        this.attempt = 0;
        this.link.resolved("config socket connected", { version: m.version });
      }
      ws.send(JSON.stringify({ t: "ack", version: m.version }));
    });
  }
}

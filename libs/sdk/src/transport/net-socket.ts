import type { SocketEvent } from "./net-protocol.js";
import { netThread } from "./net-thread.js";

/** What a socket's owner hears, in the order `ws` tells it. */
export interface NetSocketListener {
  open(): void;
  message(text: string, binary: boolean): void;
  /** The handshake was answered with this status instead of an upgrade; the close follows. */
  refused(status: number): void;
  error(message: string): void;
  close(code: number, reason: string): void;
}

/** A WebSocket client (the `ws` package) on the SDK's network thread: what the config socket needs of one. */
export class NetSocket {
  private state: "connecting" | "open" | "closing" | "closed" = "connecting";
  private readonly id: number;
  private markClosed!: () => void;
  /** Settles when the socket has closed, however it did. */
  readonly closed = new Promise<void>((resolve) => {
    this.markClosed = resolve;
  });

  constructor(
    url: URL,
    options: { headers: Record<string, string>; handshakeTimeoutMs: number },
    private readonly listener: NetSocketListener,
  ) {
    this.id = netThread.open(
      "ws",
      (id) => ({ t: "ws-open", id, url: url.href, headers: options.headers, handshakeTimeoutMs: options.handshakeTimeoutMs }),
      (m) => {
        if (m.t === "ws") this.event(m.event);
      },
    );
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  get isClosed(): boolean {
    return this.state === "closed";
  }

  send(text: string): void {
    if (this.state === "open") netThread.post({ t: "ws-send", id: this.id, text });
  }

  /** The closing handshake (a socket still connecting is abandoned); `close` follows. */
  close(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.state = "closing";
    netThread.post({ t: "ws-close", id: this.id, code, reason });
  }

  /** Drops the connection at once; `close` follows. */
  terminate(): void {
    if (this.state === "closed") return;
    this.state = "closing";
    netThread.post({ t: "ws-terminate", id: this.id });
  }

  private event(e: SocketEvent): void {
    switch (e.type) {
      case "open":
        // One the owner already gave up on opened on the way: its close is coming.
        if (this.state !== "connecting") break;
        this.state = "open";
        this.listener.open();
        break;
      case "message":
        this.listener.message(e.text, e.binary);
        break;
      case "refused":
        this.listener.refused(e.status);
        break;
      case "error":
        this.listener.error(e.message);
        break;
      case "close":
        if (this.state === "closed") break;
        this.state = "closed";
        netThread.closed(this.id);
        this.markClosed();
        this.listener.close(e.code, e.reason);
        break;
    }
  }
}

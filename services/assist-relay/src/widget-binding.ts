import { randomUUID } from "node:crypto";
import type { Logger } from "@opsplane/platform";
import type { WebSocket } from "ws";
import type { SessionStore } from "./session-store.js";

/**
 * One widget socket per session at a time, whichever replica it reaches. The
 * session token is a bearer credential: anyone holding it (from an old log, a
 * proxy's access log) could otherwise open a second socket, feed the developer
 * a fake page and answer the developer's control request in the operator's
 * name. A second socket is refused while the first is open, rather than taking
 * its place: taking over would let a stolen token push the real page out.
 *
 * The binding is a row lease: a socket binds its session when it opens and
 * unbinds it when it closes, and its replica renews it every heartbeat for all
 * the sockets it holds (one UPDATE). A half-dead socket (the page's network
 * dropped) is found by {@link keepAlive} within two heartbeats and closed,
 * which frees the session for the page's reconnection; a replica that died
 * without closing its sockets frees them when the lease runs out.
 */
export class WidgetBinding {
  /** Holder id → session id, for the sockets on this replica. */
  private readonly held = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<unknown> = Promise.resolve();
  private readonly leaseSeconds: number;

  constructor(
    private readonly store: SessionStore,
    private readonly heartbeatSeconds: number,
    private readonly log: Logger,
  ) {
    // Survives a missed renewal (a slow database) before another socket could bind.
    this.leaseSeconds = heartbeatSeconds * 3;
  }

  /** Binds the session to a new socket; its holder id, or undefined while another socket holds the session. */
  async bind(sessionId: string): Promise<string | undefined> {
    const holder = randomUUID();
    if (!(await this.store.bindWidgetSocket(sessionId, holder, this.leaseSeconds))) return undefined;
    this.held.set(holder, sessionId);
    return holder;
  }

  async unbind(holder: string): Promise<void> {
    const sessionId = this.held.get(holder);
    if (sessionId === undefined) return;
    this.held.delete(holder);
    await this.store.unbindWidgetSocket(sessionId, holder);
  }

  start(): void {
    this.timer = setInterval(() => {
      this.renewing = this.renewing
        .then(() => this.store.renewWidgetSockets([...this.held.keys()], this.leaseSeconds))
        .catch((err) => this.log.error({ err }, "could not renew the widget socket bindings"));
    }, this.heartbeatSeconds * 1000);
    this.timer.unref();
  }

  /** Stops renewing and frees what this replica still holds: its pages were told to reconnect (1001) and may reach another replica first. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    const holders = [...this.held.keys()];
    this.held.clear();
    await this.store.releaseWidgetSockets(holders);
  }
}

/**
 * Pings the socket every `seconds` and terminates it when the previous ping
 * went unanswered (browsers and `ws` answer pings by themselves), so a socket
 * whose peer vanished without closing runs its close handler.
 */
export function keepAlive(socket: WebSocket, seconds: number): void {
  let answered = true;
  socket.on("pong", () => {
    answered = true;
  });
  const timer = setInterval(() => {
    if (!answered) {
      socket.terminate();
      return;
    }
    answered = false;
    socket.ping();
  }, seconds * 1000);
  socket.on("close", () => clearInterval(timer));
}

import { type App, badRequest, forbidden, type Logger } from "@opsplane/platform";
import type { FastifyRequest } from "fastify";
import { WebSocket } from "ws";
import type { AppStore } from "../apps.js";
import type { InstanceStore, RegisteredInstance } from "../instances.js";
import type { ConfigMetrics } from "../metrics.js";
import { InstanceSocket, type PushHub, type ToInstance } from "../push.js";

export interface SocketDeps {
  app: App;
  apps: AppStore;
  instances: InstanceStore;
  hub: PushHub;
  metrics: ConfigMetrics;
  log: Logger;
  replica: string;
  maxMessagesPerSecond: number;
}

export const socketPath = (instanceId: string) => `/config/v1/instances/${instanceId}/socket`;

const accepted = new WeakMap<FastifyRequest, { identity: RegisteredInstance; version: number; checkedAtMs: number }>();

/**
 * The long-lived connection of one instance (seed steps 7, 10 and 15). The handshake carries the
 * start-up token (`x-config-token`) and the version the instance already has (`?version=`); the
 * instance first gets what changed since, then every change as it is pushed. It sends
 * `{"t":"ping"}` heartbeats and `{"t":"ack","version":N}` acknowledgements; anything else, too
 * large, or too many is refused with a reason, and a sustained flood closes the socket.
 */
export function installInstanceSocket(d: SocketDeps): void {
  d.app.get(
    "/config/v1/instances/:instanceId/socket",
    {
      websocket: true,
      config: { access: "public" },
      schema: { hide: true },
      preValidation: async (req) => {
        const { instanceId } = req.params as { instanceId: string };
        const { version } = req.query as { version?: string };
        // Taken before the access checks read the app: an app change that reached this replica later
        // may have been checked against stale access, one that reached it earlier was not.
        const checkedAtMs = Date.now();
        const appId = await d.apps.verifyToken(header(req));
        const identity = await d.instances.identity(instanceId);
        if (identity.appId !== appId) throw forbidden(`instance ${instanceId} does not belong to app ${appId}`);
        await d.apps.checkEnvironment(appId, identity.env);
        const from = version === undefined || version === "" ? 0 : Number(version);
        if (!Number.isSafeInteger(from) || from < 0) throw badRequest("version must be the non-negative version the instance already has");
        accepted.set(req, { identity, version: from, checkedAtMs });
      },
    },
    (ws, req) => {
      const { identity, version, checkedAtMs } = accepted.get(req)!;
      const s = new InstanceSocket(identity, ws, checkedAtMs);
      const limiter = new FloodGuard(d.maxMessagesPerSecond);
      const refuse = (reason: string, detail: string) => {
        d.metrics.socketRefusals.inc({ reason });
        s.send({ t: "error", reason: `${reason}: ${detail}` });
      };
      d.hub.add(s);
      d.instances
        .connected(identity, d.replica, s.connectionId)
        .then((connection) => {
          s.connection = connection;
          return d.hub.catchUp(s, version);
        })
        .catch((err) => {
          d.log.warn({ err: (err as Error).message, instanceId: identity.instanceId }, "instance could not catch up; closing its socket");
          ws.close(1011, "config-center could not read the changes; reconnect");
        });

      ws.on("message", (data: Buffer, isBinary: boolean) => {
        const verdict = limiter.take();
        if (verdict === "flood") return ws.close(1008, `more than ${d.maxMessagesPerSecond} messages per second, sustained`);
        if (verdict === "refuse") return refuse("rate-limited", `more than ${d.maxMessagesPerSecond} messages per second`);
        // Messages over SOCKET_MAX_MESSAGE_BYTES never get here: see explainOversizedMessages.
        if (isBinary) return refuse("malformed", "binary frames are not accepted; send JSON text");
        let m: { t?: unknown; version?: unknown };
        try {
          m = JSON.parse(data.toString("utf8"));
        } catch {
          return refuse("malformed", "not JSON");
        }
        s.heardAt = Date.now();
        switch (m?.t) {
          case "ping":
            return s.send({ t: "pong", at: s.heardAt });
          case "ack":
            if (!Number.isSafeInteger(m.version) || (m.version as number) < 0)
              return refuse("malformed", "ack needs a non-negative integer version");
            // Nothing past what was sent can have been applied: such an ack would fake push latencies and the recorded version.
            if ((m.version as number) > s.sentVersion)
              return refuse(
                "ack-ahead",
                `ack of version ${m.version}, but the last version sent to this instance is ${s.sentVersion}; ignored`,
              );
            return d.hub.acked(s, m.version as number);
          default:
            return refuse("malformed", 'messages are {"t":"ping"} or {"t":"ack","version":N}');
        }
      });
      ws.on("close", () => {
        d.hub.remove(s);
        d.instances
          .disconnected(identity.instanceId, s.connectionId)
          .then(() => d.metrics.offlineMarked.inc({ why: "socket-closed" }))
          .catch((err) =>
            d.log.warn({ err: (err as Error).message, instanceId: identity.instanceId }, "could not mark instance offline; the sweep will"),
          );
      });
    },
  );
}

/**
 * The WebSocket class of instance sockets. ws closes a socket with 1009 as soon as a message
 * announces more than `maxPayload` (SOCKET_MAX_MESSAGE_BYTES) bytes, before any handler sees it;
 * this class tells the instance why first (an `error` message), counts it, and names the limit in
 * the close reason.
 */
export function explainOversizedMessages(maxMessageBytes: number, metrics: ConfigMetrics): typeof WebSocket {
  return class InstanceWebSocket extends WebSocket {
    override close(code?: number, data?: string | Buffer): void {
      if (code === 1009 && data === undefined && this.readyState === this.OPEN) {
        metrics.socketRefusals.inc({ reason: "too-large" });
        const reason = `too-large: a message over ${maxMessageBytes} bytes (SOCKET_MAX_MESSAGE_BYTES); closing (1009)`;
        this.send(JSON.stringify({ t: "error", reason } satisfies ToInstance));
        super.close(1009, `message over ${maxMessageBytes} bytes`);
      } else super.close(code, data);
    }
  };
}

export const header = (req: FastifyRequest) => {
  const v = req.headers["x-config-token"];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * Messages per second with a one-second burst: beyond it messages are refused; after ten seconds'
 * worth of refusals without a quiet second the socket is a flood and is closed.
 */
class FloodGuard {
  private tokens: number;
  private last = Date.now();
  private refused = 0;

  constructor(private readonly perSecond: number) {
    this.tokens = perSecond;
  }

  take(): "ok" | "refuse" | "flood" {
    const now = Date.now();
    const elapsed = (now - this.last) / 1000;
    this.last = now;
    if (elapsed >= 1) this.refused = 0;
    this.tokens = Math.min(this.perSecond, this.tokens + elapsed * this.perSecond);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return "ok";
    }
    return ++this.refused > this.perSecond * 10 ? "flood" : "refuse";
  }
}

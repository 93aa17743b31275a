import { NestedTooDeep, type Sanitiser } from "@opsplane/assist-widget/sanitiser";
import { type App, type Auditor, type Logger, type Role, unauthorized } from "@opsplane/platform";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { FastifyRequest } from "fastify";
import type { WebSocket } from "ws";
import type { Hub } from "./hub.js";
import type { IdleTimeout } from "./idle-timeout.js";
import type { AssistMetrics } from "./metrics.js";
import type { OriginPolicy } from "./origin-policy.js";
import { DeveloperMessage, type ToDeveloper, type ToWidget, WidgetMessage } from "./protocol.js";
import type { Recorder } from "./recorder.js";
import type { SessionStore } from "./session-store.js";
import { TokenBucket } from "./token-bucket.js";
import { keepAlive, type WidgetBinding } from "./widget-binding.js";

const widgetMessage = TypeCompiler.Compile(WidgetMessage);
const developerMessage = TypeCompiler.Compile(DeveloperMessage);

export interface LiveDeps {
  app: App;
  /** Applied to every page frame before it is forwarded or recorded, whatever the widget did. */
  sanitiser: Sanitiser;
  store: SessionStore;
  hub: Hub;
  recorder: Recorder;
  idle: IdleTimeout;
  binding: WidgetBinding;
  origins: OriginPolicy;
  audit: Auditor;
  metrics: AssistMetrics;
  log: Logger;
  maxMessageBytes: number;
  maxMessagesPerSecond: number;
  heartbeatSeconds: number;
}

type Side = "widget" | "developer";

/** A frame whose handling throws closes its own socket (1011), logged: it never reaches the process's fatal handler. */
const handled =
  (socket: WebSocket, log: Logger, handle: (data: unknown, isBinary: boolean) => void) => (data: unknown, isBinary: boolean) => {
    try {
      handle(data, isBinary);
    } catch (err) {
      log.error({ err }, "assist frame could not be handled; its socket is closed");
      socket.close(1011, "internal error");
    }
  };

/** How often one watcher may ask the page for a full snapshot (100 asks made 144 snapshots, 500 KB recorded, on a tiny page). */
const snapshotRequestEveryMs = 2_000;

/**
 * Checks one incoming frame: size, rate, JSON and schema. Refusals are sent
 * back with their reason and recorded (at most once per reason every 10 s per
 * socket, so a flood cannot flood the refusal table too).
 */
function guard<M>(
  deps: LiveDeps,
  side: Side,
  socket: WebSocket,
  sessionId: string,
  actor: string,
  check: { Check(v: unknown): v is M; Errors(v: unknown): Iterable<{ path: string; message: string }> },
) {
  const bucket = new TokenBucket(deps.maxMessagesPerSecond);
  const lastRecorded = new Map<string, number>();
  const refuse = (reason: string, detail: string) => {
    deps.metrics.refusals.inc({ reason });
    socket.send(JSON.stringify({ t: "error", reason: `${reason}: ${detail}` } satisfies ToWidget));
    const now = Date.now();
    if ((lastRecorded.get(reason) ?? 0) > now - 10_000) return;
    lastRecorded.set(reason, now);
    deps.log.warn({ sessionId, side, actor, reason, detail }, "assist message refused");
    deps.store.refusal(sessionId, actor, reason, detail).catch((err) => deps.log.error({ err }, "could not record refusal"));
  };
  return {
    refuse,
    /**
     * The message as validated. Only it is passed on, re-encoded, never the frame's text: JSON with a key twice
     * (`{"t":"control-request","t":"panel"}`) reads as its last value here and as its first to a prefix test.
     */
    read(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): M | undefined {
      const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
      if (size > deps.maxMessageBytes) return void refuse("message-too-large", `${size} bytes; the limit is ${deps.maxMessageBytes}`);
      if (!bucket.take()) return void refuse("rate-limited", `more than ${deps.maxMessagesPerSecond} messages per second`);
      if (isBinary) return void refuse("malformed", "binary frames are not accepted; send JSON text");
      const raw = Array.isArray(data) ? Buffer.concat(data).toString() : Buffer.from(data as ArrayBuffer).toString();
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return void refuse("malformed", "not JSON");
      }
      if (!check.Check(parsed)) {
        const first = [...check.Errors(parsed)][0];
        const t = typeof parsed === "object" && parsed && "t" in parsed ? String((parsed as { t: unknown }).t) : "?";
        return void refuse(
          "malformed",
          `message "${t}" does not fit the protocol${first ? ` at ${first.path || "/"}: ${first.message}` : ""}`,
        );
      }
      deps.metrics.messages.inc({ side, type: (parsed as { t: string }).t });
      return parsed;
    },
  };
}

/**
 * A page frame as the developer sees it and the recording keeps it: `m` itself when nothing needed masking.
 * `rrweb` is the page socket's stream masker, which remembers the page's sensitive fields from frame to frame.
 */
function sanitised(
  sanitiser: Sanitiser,
  rrweb: ReturnType<Sanitiser["rrwebStream"]>,
  m: Extract<WidgetMessage, { t: "rrweb" | "console" | "network" }>,
): WidgetMessage {
  const same = <T>(before: T[], after: T[]) => after.every((v, i) => v === before[i]);
  switch (m.t) {
    case "rrweb": {
      const events = rrweb(m.events);
      return events === m.events ? m : { t: "rrweb", events };
    }
    case "console": {
      const entries = m.entries.map(sanitiser.console);
      return same(m.entries, entries) ? m : { t: "console", entries };
    }
    case "network": {
      const entries = m.entries.map(sanitiser.network);
      return same(m.entries, entries) ? m : { t: "network", entries };
    }
  }
}

/** The session a widget socket opens, and its binding (undefined when another socket holds the session). */
const widgetSessions = new WeakMap<FastifyRequest, { sessionId: string; origin: string; holder: string | undefined }>();
const developerTickets = new WeakMap<FastifyRequest, { sessionId: string; developer: string; role: string }>();

export function installLiveSockets(deps: LiveDeps): void {
  const { app, store, hub, recorder, idle, binding, origins, metrics, log } = deps;
  const toDeveloper = (sessionId: string, m: ToDeveloper) => hub.publish(sessionId, "developer", JSON.stringify(m));
  const toWidget = (sessionId: string, m: ToWidget) => hub.publish(sessionId, "widget", JSON.stringify(m));
  const failed = (err: unknown) => log.error({ err }, "assist socket action failed");

  app.get(
    "/assist/ws/widget",
    {
      websocket: true,
      config: { access: "public" },
      preValidation: async (req) => {
        const origin = await origins.require(req, "widget socket");
        const { ticket } = req.query as { ticket?: string };
        const sessionId = ticket ? await store.takeWidgetTicket(ticket) : undefined;
        if (!sessionId) {
          metrics.refusals.inc({ reason: "widget-ticket" });
          await store.refusal(undefined, `origin:${origin}`, "widget-ticket", "unknown, used or expired ticket");
          throw unauthorized("unknown, used or expired ticket; get one with POST /assist/sessions/:id/widget-ticket");
        }
        widgetSessions.set(req, { sessionId, origin, holder: await binding.bind(sessionId) });
      },
    },
    (socket, req) => {
      const { sessionId, origin, holder } = widgetSessions.get(req)!;
      if (!holder) {
        // Accepted, then closed with a code and a reason, because a browser sees neither on a refused handshake.
        metrics.refusals.inc({ reason: "widget-socket-in-use" });
        log.warn({ sessionId, origin, ip: req.ip }, "second widget socket refused: the session already has one");
        store.refusal(sessionId, `origin:${origin}`, "widget-socket-in-use", `ip ${req.ip}`).catch(failed);
        socket.close(4409, "this session is connected from another page; it can reconnect once that socket has closed");
        return;
      }
      keepAlive(socket, deps.heartbeatSeconds);
      const actor = `operator:${sessionId}`;
      const frames = guard(deps, "widget", socket, sessionId, actor, widgetMessage);
      const pageStream = deps.sanitiser.rrwebStream();
      let pendingRequestFrom: string | undefined;
      let grantedTo: string | undefined;
      // A page drops control when its socket closes, so a grant still open here was made on a socket whose
      // close was never handled (its relay died): it ends now, and its developer stops sending control.
      const staleGrantEnded = store
        .revokeControl(sessionId, "page-reconnected")
        .then(async (developer) => {
          if (developer)
            await toDeveloper(sessionId, {
              t: "control-state",
              granted: false,
              developer,
              by: "relay",
              reason: "the operator's page reconnected; ask for control again",
            });
        })
        .catch(failed);
      metrics.sockets.inc({ side: "widget" });
      idle.heard(sessionId);
      const joined = hub.join(sessionId, "widget", (raw) => {
        // Ended elsewhere (idle timeout, maximum age), possibly by another replica: tell the page and hang up.
        if (raw.startsWith('{"t":"session-ended"')) {
          socket.send(raw);
          socket.close(1000, "session ended");
          return;
        }
        // Control reaches the page only from the developer this page socket granted it to: a developer's replica may
        // not know yet that control ended (taken back, given to another, or a grant made on a socket that died).
        if (raw.startsWith('{"t":"control",') && (JSON.parse(raw) as { developer: string }).developer !== grantedTo) return;
        // The relay remembers what the operator is asked, so a consent can only answer a real request.
        if (raw.startsWith('{"t":"control-request"')) {
          const from = (JSON.parse(raw) as { developer: string }).developer;
          // One developer controls at a time: the operator is not asked while another holds control.
          if (grantedTo && grantedTo !== from) {
            const reason = `${grantedTo} has control; ask them to release it`;
            toDeveloper(sessionId, { t: "control-refused", reason, developer: from }).catch(failed);
            return;
          }
          pendingRequestFrom = from;
        }
        // Control ends when its holder releases it or leaves; another developer leaving changes nothing.
        if (raw.startsWith('{"t":"control-release"') || raw.startsWith('{"t":"developer-left"')) {
          if ((JSON.parse(raw) as { developer: string }).developer === grantedTo) grantedTo = undefined;
        }
        socket.send(raw);
      });
      joined.then(() => toDeveloper(sessionId, { t: "operator", connected: true })).catch(failed);

      socket.on(
        "message",
        handled(socket, log, (data, isBinary) => {
          const m = frames.read(data as Buffer, isBinary);
          if (!m) return;
          idle.heard(sessionId);
          switch (m.t) {
            case "rrweb":
            case "console":
            case "network": {
              let masked: WidgetMessage;
              try {
                masked = sanitised(deps.sanitiser, pageStream, m);
              } catch (err) {
                if (err instanceof NestedTooDeep) return frames.refuse("malformed", `message "${m.t}" is ${err.message}`);
                throw err;
              }
              const clean = JSON.stringify(masked);
              recorder.add(sessionId, m.t, clean);
              hub.publish(sessionId, "developer", clean).catch(failed);
              return;
            }
            case "panel":
              toDeveloper(sessionId, { t: "panel", open: m.open }).catch(failed);
              return;
            case "control-refused":
              // The page refused the controlling developer's action: their console shows it, the others' do not.
              toDeveloper(sessionId, {
                t: "control-refused",
                reason: deps.sanitiser.text(m.reason),
                ...(grantedTo ? { developer: grantedTo } : {}),
              }).catch(failed);
              return;
            case "control-response": {
              const developer = pendingRequestFrom;
              if (!developer) return frames.refuse("no-control-request", "no developer has asked for control");
              pendingRequestFrom = undefined;
              if (!m.granted) {
                toDeveloper(sessionId, { t: "control-refused", reason: "the operator refused remote control", developer }).catch(failed);
                return;
              }
              grantedTo = developer;
              staleGrantEnded
                .then(() => store.grantControl(sessionId, developer))
                .then(() => toDeveloper(sessionId, { t: "control-state", granted: true, developer, by: "operator" }))
                .catch(failed);
              return;
            }
            case "control-revoke": {
              const developer = grantedTo ?? "";
              grantedTo = undefined;
              // Tell the developer's replica first: from then on it refuses control events, even before the DB write.
              toDeveloper(sessionId, {
                t: "control-state",
                granted: false,
                developer,
                by: "operator",
                ...(m.reason ? { reason: deps.sanitiser.text(m.reason) } : {}),
              })
                .then(() => store.revokeControl(sessionId, "operator"))
                .catch(failed);
              return;
            }
            case "end":
              store
                .end(sessionId, "operator")
                .then(() => toDeveloper(sessionId, { t: "session-ended", by: "operator" }))
                .then(() => socket.close(1000, "session ended"))
                .catch(failed);
              return;
          }
        }),
      );
      socket.on("close", () => {
        metrics.sockets.dec({ side: "widget" });
        // First, so the page's reconnection finds its session free.
        binding.unbind(holder).catch(failed);
        joined
          .then((leave) => leave())
          .then(() => toDeveloper(sessionId, { t: "operator", connected: false }))
          .then(async () => {
            // An operator who leaves the page takes control back.
            if (grantedTo && (await store.revokeControl(sessionId, "operator")))
              await toDeveloper(sessionId, { t: "control-state", granted: false, developer: grantedTo, by: "operator" });
          })
          .catch(failed);
      });
    },
  );

  app.get(
    "/assist/ws/developer",
    {
      websocket: true,
      config: { access: "public" },
      preValidation: async (req) => {
        const { ticket } = req.query as { ticket?: string };
        const taken = ticket ? await store.takeTicket(ticket) : undefined;
        if (!taken) {
          metrics.refusals.inc({ reason: "ticket" });
          await store.refusal(undefined, `ip:${req.ip}`, "ticket", "unknown, used or expired ticket");
          throw unauthorized("unknown, used or expired ticket; get one with POST /assist/connect");
        }
        developerTickets.set(req, taken);
      },
    },
    (socket, req) => {
      const { sessionId, developer, role } = developerTickets.get(req)!;
      const frames = guard(deps, "developer", socket, sessionId, developer, developerMessage);
      let granted = false;
      let watchId: number | undefined;
      let lastSnapshotRequest = 0;
      keepAlive(socket, deps.heartbeatSeconds);
      metrics.sockets.inc({ side: "developer" });
      const joined = hub.join(sessionId, "developer", (raw) => {
        // The page is back (reconnected, or reloaded): it learns who is watching from each watcher's replica.
        if (raw.startsWith('{"t":"operator","connected":true')) toWidget(sessionId, { t: "developer-joined", developer }).catch(failed);
        if (raw.startsWith('{"t":"control-state"')) {
          const state = JSON.parse(raw) as { granted: boolean; developer: string };
          if (state.developer === developer || !state.granted) granted = state.granted;
        }
        socket.send(raw);
      });
      joined
        .then(async () => {
          watchId = await store.startWatch(sessionId, developer);
          await toWidget(sessionId, { t: "developer-joined", developer });
          // A developer joining (or re-joining) late starts from a fresh full snapshot.
          await toWidget(sessionId, { t: "snapshot-request" });
        })
        .catch(failed);

      socket.on(
        "message",
        handled(socket, log, (data, isBinary) => {
          const m = frames.read(data as Buffer, isBinary);
          if (!m) return;
          switch (m.t) {
            case "control-request":
              toWidget(sessionId, { t: "control-request", developer }).catch(failed);
              return;
            case "control-release":
              if (!granted) return;
              granted = false;
              toWidget(sessionId, { t: "control-release", developer })
                .then(() => store.revokeControl(sessionId, "developer"))
                .then(() => toDeveloper(sessionId, { t: "control-state", granted: false, developer, by: "developer" }))
                .catch(failed);
              return;
            case "control":
              if (!granted) {
                const reason = "remote control has not been granted by the operator";
                metrics.refusals.inc({ reason: "control-without-grant" });
                socket.send(JSON.stringify({ t: "control-refused", reason } satisfies ToDeveloper));
                store.refusal(sessionId, developer, "control-without-grant", JSON.stringify(m.action)).catch(failed);
                deps.audit
                  .record(deps.store.pool, {
                    principal: { kind: "key", id: developer.replace(/^key:/, ""), role: role as Role },
                    action: "control.send",
                    target: `session/${sessionId}`,
                    after: { reason },
                    outcome: "denied",
                  })
                  .catch(failed);
                return;
              }
              toWidget(sessionId, { t: "control", action: m.action, developer }).catch(failed);
              return;
            case "panel":
              toWidget(sessionId, { t: "panel", open: m.open }).catch(failed);
              return;
            case "snapshot-request": {
              // Each costs the operator's page a full snapshot (and the recording its size): one every few seconds per watcher.
              const now = Date.now();
              if (now - lastSnapshotRequest < snapshotRequestEveryMs)
                return frames.refuse("rate-limited", `at most one snapshot request every ${snapshotRequestEveryMs / 1000} s`);
              lastSnapshotRequest = now;
              toWidget(sessionId, { t: "snapshot-request" }).catch(failed);
              return;
            }
            case "pointer":
              // Shown, not recorded: the page learns who points, from the relay, not from the console.
              toWidget(sessionId, { t: "pointer", developer, x: m.x, y: m.y }).catch(failed);
              return;
          }
        }),
      );
      socket.on("close", () => {
        metrics.sockets.dec({ side: "developer" });
        joined
          .then((leave) => leave())
          .then(async () => {
            if (watchId !== undefined) await store.endWatch(watchId);
            await toWidget(sessionId, { t: "developer-left", developer });
            if (granted && (await store.revokeControl(sessionId, "developer-left")))
              await toDeveloper(sessionId, { t: "control-state", granted: false, developer, by: "relay" });
          })
          .catch(failed);
      });
    },
  );
}

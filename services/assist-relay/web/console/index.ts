import type { ControlAction, DeveloperMessage, ToDeveloper } from "../../src/protocol.js";
import { LiveView } from "./live-view.js";
import { Panels } from "./panels.js";
import { loadRecording, RecordingView } from "./recording-view.js";

const $ = <E extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as E;
const apiKeyInput = $<HTMLInputElement>("api-key");
apiKeyInput.value = sessionStorage.getItem("opsplane-api-key") ?? "";
apiKeyInput.addEventListener("change", () => sessionStorage.setItem("opsplane-api-key", apiKeyInput.value));

let socket: WebSocket | undefined;
let granted = false;
/** This console's developer ("key:<id>"), as the relay names it in control messages meant for one developer. */
let me: string | undefined;
const panels = new Panels($("console-lines"), $("network-calls"));
const view = new LiveView(
  $("replay"),
  (action) => send({ t: "control", action }),
  (reason) => notice(`Not sent: ${reason}`),
  (x, y) => send({ t: "pointer", x, y }),
);

const recordingView = new RecordingView($("recording-player"), $<HTMLInputElement>("recording-seek"), $("recording-time"));

/** Switches the main area between the live view and a stored recording. */
function showRecordingArea(on: boolean): void {
  $("replay").hidden = on;
  $("recording-player").hidden = !on;
  $("recording-controls").hidden = !on;
}

/** Replays a finished (or running) session's stored recording, with its console lines and calls in the panels. */
async function replay(sessionId: string): Promise<void> {
  notice("");
  let recording: Awaited<ReturnType<typeof loadRecording>>;
  try {
    recording = await loadRecording(sessionId, apiKeyInput.value);
  } catch (err) {
    notice(`Cannot replay: ${(err as Error).message}`);
    return;
  }
  panels.clear();
  panels.addConsole(recording.console);
  panels.addNetwork(recording.network);
  $("recording-session").textContent = sessionId;
  showRecordingArea(true);
  if (!recordingView.show(recording)) notice("This session's recording holds no page snapshot to replay");
}

$("replay-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void replay($<HTMLInputElement>("replay-session").value.trim());
});
$("recording-play").addEventListener("click", () => recordingView.play());
$("recording-pause").addEventListener("click", () => recordingView.pause());
$("recording-close").addEventListener("click", () => {
  recordingView.stop();
  showRecordingArea(false);
});
// `/console?replay=<session id>` opens a recording directly (with the API key of this tab).
const linked = new URLSearchParams(location.search).get("replay");
if (linked && apiKeyInput.value) {
  $<HTMLInputElement>("replay-session").value = linked;
  void replay(linked);
}

function send(m: DeveloperMessage): void {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(m));
}

function notice(text: string): void {
  $("notice").textContent = text;
}

function setGranted(on: boolean, by: string): void {
  granted = on;
  view.setInteractive(on);
  if (on) notice("");
  const state = $("control-state");
  state.textContent = on ? "Control granted" : by === "operator" ? "Control taken back by the operator" : "No control";
  state.className = on ? "granted" : "";
  $<HTMLButtonElement>("release-control").disabled = !on;
  $<HTMLButtonElement>("request-control").disabled = on;
}

const endedText = (by: string) =>
  by === "idle" ? "Session ended: no activity on the operator's page" : `Session ended by the ${by === "operator" ? "operator" : "relay"}`;

function onMessage(m: ToDeveloper): void {
  switch (m.t) {
    case "rrweb":
      view.add(m.events as Parameters<LiveView["add"]>[0]);
      return;
    case "console":
      panels.addConsole(m.entries);
      return;
    case "network":
      panels.addNetwork(m.entries);
      return;
    case "panel":
      $("toggle-panel").dataset.open = String(m.open);
      return;
    case "control-state":
      // Another developer of the session took or released control: shown, this console's own state unchanged.
      if (m.developer !== me) {
        if (!granted) $("control-state").textContent = m.granted ? `${m.developer} has control` : "No control";
        return;
      }
      setGranted(m.granted, m.by);
      if (m.reason) notice(`Control ended: ${m.reason}`);
      return;
    case "control-refused":
      if (m.developer && m.developer !== me) return;
      notice(`Control refused: ${m.reason}`);
      // Refused by the page when the field changed under the developer's edit: show them its real state again.
      view.resync();
      return;
    case "operator":
      $("operator-state").textContent = m.connected
        ? "· operator's page connected"
        : "· operator's page disconnected (it reconnects by itself)";
      return;
    case "session-ended":
      stopWatching(endedText(m.by));
      setGranted(false, "relay");
      return;
    case "error":
      notice(m.reason);
      return;
  }
}

/** The session this tab watches, kept across reloads of the console (sessionStorage: this tab only). */
const watchedKey = "opsplane-assist-watching";
let watched: string | undefined;
/** Reconnection attempts since the socket was last open. */
let reconnects = 0;

/** Opens the developer socket with a single-use ticket; when it drops, gets a new ticket and opens it again. */
function watch(sessionId: string, ticket: string): void {
  watched = sessionId;
  sessionStorage.setItem(watchedKey, sessionId);
  const url = new URL("/assist/ws/developer", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("ticket", ticket);
  const ws = new WebSocket(url);
  socket = ws;
  ws.addEventListener("open", () => {
    reconnects = 0;
    $("status").textContent = `Watching session ${sessionId}`;
    for (const id of ["request-control", "toggle-panel"]) $<HTMLButtonElement>(id).disabled = false;
  });
  ws.addEventListener("message", (e) => onMessage(JSON.parse(String(e.data)) as ToDeveloper));
  ws.addEventListener("close", () => {
    setGranted(false, "relay");
    if (watched !== sessionId || socket !== ws) return;
    // Any close while the session goes on (a dropped network, 1001 from a relay shutting down) is followed by a rejoin.
    $("status").textContent = "Connection lost; reconnecting…";
    setTimeout(() => void rejoin(sessionId), Math.min(30_000, 1000 * 2 ** reconnects++));
  });
}

/** A re-join gives up after this, so a network that dropped silently does not hold it for the browser's own timeout (about a minute). */
const requestTimeoutMs = 5_000;

/** Joins the session again as its own developer (a new ticket for this API key), after a drop or a reload. */
async function rejoin(sessionId: string): Promise<void> {
  if (watched !== undefined && watched !== sessionId) return;
  let body: { ticket?: string; developer?: string; message?: string };
  try {
    const response = await fetch(`/assist/sessions/${sessionId}/tickets`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKeyInput.value}` },
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    body = (await response.json()) as typeof body;
    if (response.status >= 400 && response.status < 500) {
      // Ended while this console was away: say how, as if it had been here.
      const session = await fetch(`/assist/sessions/${sessionId}`, {
        headers: { authorization: `Bearer ${apiKeyInput.value}` },
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
      const state = session.ok ? ((await session.json()) as { status: string; endedBy: string | null }) : undefined;
      stopWatching(state?.status === "ended" ? endedText(state.endedBy ?? "relay") : `Not watching: ${body.message}`);
      return;
    }
    if (!response.ok || !body.ticket) throw new Error(body.message);
  } catch {
    $("status").textContent = "Connection lost; reconnecting…";
    watched = sessionId;
    setTimeout(() => void rejoin(sessionId), Math.min(30_000, 1000 * 2 ** reconnects++));
    return;
  }
  me = body.developer;
  watch(sessionId, body.ticket);
}

function stopWatching(status: string): void {
  watched = undefined;
  sessionStorage.removeItem(watchedKey);
  socket?.close(1000);
  $("status").textContent = status;
}

$("connect").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  notice("");
  const response = await fetch("/assist/connect", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKeyInput.value}` },
    body: JSON.stringify({ key: $<HTMLInputElement>("connection-key").value }),
  });
  const body = (await response.json()) as { sessionId?: string; ticket?: string; developer?: string; message?: string };
  if (!response.ok || !body.ticket || !body.sessionId) {
    notice(`Not connected: ${body.message}`);
    return;
  }
  if (watched) stopWatching("Not connected");
  reconnects = 0;
  me = body.developer;
  watch(body.sessionId, body.ticket);
});

// A reload of the console re-joins the session this tab was watching.
const rewatch = sessionStorage.getItem(watchedKey);
if (rewatch && apiKeyInput.value) void rejoin(rewatch);

$("request-control").addEventListener("click", () => {
  notice("Waiting for the operator's consent…");
  send({ t: "control-request" });
});
$("release-control").addEventListener("click", () => send({ t: "control-release" }));
$("toggle-panel").addEventListener("click", () => {
  const open = $("toggle-panel").dataset.open !== "true";
  $("toggle-panel").dataset.open = String(open);
  send({ t: "panel", open });
});

/** Scripting surface of the console (automation and tests): send an action as if clicked, read the state. */
(window as unknown as { assistConsole: object }).assistConsole = {
  sendControl: (action: ControlAction) => send({ t: "control", action }),
  get granted() {
    return granted;
  },
  get document() {
    return view.document;
  },
  nodeId: (selector: string) => view.nodeId(selector),
  /** The recording being replayed: its document, its length and a seek. */
  recording: {
    get document() {
      return recordingView.document;
    },
    get totalTime() {
      return recordingView.totalTime;
    },
    seek: (ms: number) => recordingView.seek(ms),
  },
};

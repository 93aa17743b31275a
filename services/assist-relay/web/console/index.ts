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
const panels = new Panels($("console-lines"), $("network-calls"));
const view = new LiveView(
  $("replay"),
  (action) => send({ t: "control", action }),
  (reason) => notice(`Not sent: ${reason}`),
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
      setGranted(m.granted, m.by);
      return;
    case "control-refused":
      notice(`Control refused: ${m.reason}`);
      // Refused by the page when the field changed under the developer's edit: show them its real state again.
      view.resync();
      return;
    case "operator":
      $("status").textContent = m.connected ? "Operator connected" : "Operator disconnected";
      return;
    case "session-ended":
      $("status").textContent =
        m.by === "idle"
          ? "Session ended: no activity on the operator's page"
          : `Session ended by the ${m.by === "operator" ? "operator" : "relay"}`;
      setGranted(false, "relay");
      return;
    case "error":
      notice(m.reason);
      return;
  }
}

$("connect").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  notice("");
  const response = await fetch("/assist/connect", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKeyInput.value}` },
    body: JSON.stringify({ key: $<HTMLInputElement>("connection-key").value }),
  });
  const body = (await response.json()) as { sessionId?: string; ticket?: string; message?: string };
  if (!response.ok || !body.ticket) {
    notice(`Not connected: ${body.message}`);
    return;
  }
  const url = new URL("/assist/ws/developer", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("ticket", body.ticket);
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    $("status").textContent = `Watching session ${body.sessionId}`;
    for (const id of ["request-control", "toggle-panel"]) $<HTMLButtonElement>(id).disabled = false;
  });
  socket.addEventListener("message", (e) => onMessage(JSON.parse(String(e.data)) as ToDeveloper));
  socket.addEventListener("close", () => {
    $("status").textContent = "Disconnected";
    setGranted(false, "relay");
  });
});

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

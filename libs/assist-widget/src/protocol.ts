import type { SanitiserConfig } from "./sanitiser.js";

/**
 * The page's side of the relay's wire protocol (JSON text frames on the widget's WebSocket), as plain
 * types so the published package needs no schema library. The relay validates every frame with its
 * own schemas (`services/assist-relay/src/protocol.ts`), which are checked at compile time to accept
 * exactly these types.
 */

export interface ConsoleEntry {
  level: "log" | "info" | "warn" | "error" | "debug";
  text: string;
  at: number;
}

export interface NetworkEntry {
  via: "fetch" | "xhr";
  method: string;
  url: string;
  /** 0 when the call failed before a response. */
  status: number;
  startedAt: number;
  durationMs: number;
  requestBody?: string;
  responseBody?: string;
  error?: string;
}

/** What a developer may do on the operator's page while control is granted; targets are rrweb mirror node ids. */
export type ControlAction =
  | { kind: "click"; id: number }
  /** Replaces the value's UTF-16 units [start, end) with `text`; refused when the field's value is not `length` long. */
  | { kind: "edit"; id: number; start: number; end: number; text: string; length: number }
  /** Chooses options of a <select> by index. */
  | { kind: "select"; id: number; selected: number[] }
  | { kind: "scroll"; dx: number; dy: number }
  /** A key that is not text (Enter, Tab, Escape, arrows), pressed in the field `id` (absent: the page's focused element). */
  | { kind: "key"; id?: number; key: string; shift: boolean };

/** Widget → relay. */
export type WidgetMessage =
  | { t: "rrweb"; events: { type: number; timestamp: number }[] }
  | { t: "console"; entries: ConsoleEntry[] }
  | { t: "network"; entries: NetworkEntry[] }
  | { t: "panel"; open: boolean }
  | { t: "control-response"; granted: boolean }
  /** The operator took control back (`reason`: why, when the page did it by itself, e.g. its tab was hidden). */
  | { t: "control-revoke"; reason?: string }
  /** The page did not apply a control action (e.g. an edit made on a stale view of the field). */
  | { t: "control-refused"; reason: string }
  | { t: "end" };

/** Relay → widget. */
export type ToWidget =
  | { t: "developer-joined"; developer: string }
  | { t: "developer-left"; developer: string }
  | { t: "snapshot-request" }
  | { t: "control-request"; developer: string }
  | { t: "control-release"; developer: string }
  /** `developer`: who sent it; the relay passes it on only while that developer holds this page's grant. */
  | { t: "control"; action: ControlAction; developer: string }
  | { t: "pointer"; developer: string; x: number; y: number }
  | { t: "panel"; open: boolean }
  | { t: "session-ended"; by: string }
  /** Too many wrong tries blocked the session's key: the operator needs a new one. */
  | { t: "key-blocked" }
  | { t: "error"; reason: string };

/** What the widget is told when it opens a session: the key to show and how to mask (the policy again, in case `GET /assist/policy` failed). */
export interface OpenedSession {
  sessionId: string;
  widgetToken: string;
  key: string;
  keyExpiresAt: string;
  policy: CapturePolicy;
}

/** How the widget masks, as configured at the relay (`GET /assist/policy`): the relay applies the same sanitiser again. */
export interface CapturePolicy {
  unmaskedInputSelector: string;
  sanitiser: SanitiserConfig;
}

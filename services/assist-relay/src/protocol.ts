import { type Static, Type } from "@sinclair/typebox";

/**
 * Messages on the two WebSockets, as JSON text frames. The widget (operator's
 * page) and the developer console import these types; the relay validates
 * every incoming frame against the schemas.
 */

export const ConsoleEntry = Type.Object({
  level: Type.Union([Type.Literal("log"), Type.Literal("info"), Type.Literal("warn"), Type.Literal("error"), Type.Literal("debug")]),
  text: Type.String({ maxLength: 16384 }),
  at: Type.Number(),
});
export type ConsoleEntry = Static<typeof ConsoleEntry>;

export const NetworkEntry = Type.Object({
  via: Type.Union([Type.Literal("fetch"), Type.Literal("xhr")]),
  method: Type.String({ maxLength: 16 }),
  url: Type.String({ maxLength: 4096 }),
  /** 0 when the call failed before a response. */
  status: Type.Integer(),
  startedAt: Type.Number(),
  durationMs: Type.Number(),
  requestBody: Type.Optional(Type.String()),
  responseBody: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
});
export type NetworkEntry = Static<typeof NetworkEntry>;

/**
 * What a developer may do on the operator's page while control is granted; targets are rrweb mirror node ids.
 * Typing never carries a field's value: the developer sees masked fields as `*` (one per character), so an
 * edit says which characters of the value it replaces. Masking keeps the length, so the offsets in the
 * developer's view are offsets in the operator's real value.
 */
export const ControlAction = Type.Union([
  Type.Object({ kind: Type.Literal("click"), id: Type.Integer({ minimum: 0 }) }),
  Type.Object({
    kind: Type.Literal("edit"),
    id: Type.Integer({ minimum: 0 }),
    /** Replaces the value's UTF-16 units [start, end) with `text` (typing, paste, deletion, typing over a selection). */
    start: Type.Integer({ minimum: 0 }),
    end: Type.Integer({ minimum: 0 }),
    text: Type.String({ maxLength: 65536 }),
    /** The value's length in the developer's view; the page refuses the edit when its field has another length. */
    length: Type.Integer({ minimum: 0 }),
  }),
  /** Chooses options of a <select> by index (the option list is streamed unmasked; which one is selected may not be). */
  Type.Object({
    kind: Type.Literal("select"),
    id: Type.Integer({ minimum: 0 }),
    selected: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 10000 }),
  }),
  Type.Object({ kind: Type.Literal("scroll"), dx: Type.Number(), dy: Type.Number() }),
]);
export type ControlAction = Static<typeof ControlAction>;

const RrwebEvents = Type.Array(Type.Object({ type: Type.Integer(), timestamp: Type.Number() }), { minItems: 1, maxItems: 10000 });

/** Widget → relay. */
export const WidgetMessage = Type.Union([
  Type.Object({ t: Type.Literal("rrweb"), events: RrwebEvents }),
  Type.Object({ t: Type.Literal("console"), entries: Type.Array(ConsoleEntry, { minItems: 1, maxItems: 1000 }) }),
  Type.Object({ t: Type.Literal("network"), entries: Type.Array(NetworkEntry, { minItems: 1, maxItems: 1000 }) }),
  Type.Object({ t: Type.Literal("panel"), open: Type.Boolean() }),
  Type.Object({ t: Type.Literal("control-response"), granted: Type.Boolean() }),
  Type.Object({ t: Type.Literal("control-revoke") }),
  /** The page did not apply a control action (e.g. an edit made on a stale view of the field); passed on to the developer. */
  Type.Object({ t: Type.Literal("control-refused"), reason: Type.String({ maxLength: 500 }) }),
  Type.Object({ t: Type.Literal("end") }),
]);
export type WidgetMessage = Static<typeof WidgetMessage>;

/** Developer console → relay. */
export const DeveloperMessage = Type.Union([
  Type.Object({ t: Type.Literal("control-request") }),
  Type.Object({ t: Type.Literal("control-release") }),
  Type.Object({ t: Type.Literal("control"), action: ControlAction }),
  Type.Object({ t: Type.Literal("panel"), open: Type.Boolean() }),
  Type.Object({ t: Type.Literal("snapshot-request") }),
]);
export type DeveloperMessage = Static<typeof DeveloperMessage>;

/** Relay → developer console: the widget's stream plus the relay's own notices. */
export type ToDeveloper =
  | Extract<WidgetMessage, { t: "rrweb" | "console" | "network" | "panel" | "control-refused" }>
  | { t: "control-state"; granted: boolean; developer: string; by: "operator" | "developer" | "relay" }
  | { t: "operator"; connected: boolean }
  | { t: "session-ended"; by: string }
  | { t: "error"; reason: string };

/** Relay → widget. */
export type ToWidget =
  | { t: "developer-joined"; developer: string }
  | { t: "developer-left"; developer: string }
  | { t: "snapshot-request" }
  | { t: "control-request"; developer: string }
  | { t: "control-release"; developer: string }
  | { t: "control"; action: ControlAction }
  | { t: "panel"; open: boolean }
  | { t: "session-ended"; by: string }
  | { t: "error"; reason: string };

/** What the widget is told when it opens a session: the key to show and how to mask. */
export interface OpenedSession {
  sessionId: string;
  widgetToken: string;
  key: string;
  keyExpiresAt: string;
  policy: CapturePolicy;
}

export interface CapturePolicy {
  unmaskedInputSelector: string;
  networkBodyMaxBytes: number;
  maskedBodyKeys: string;
}

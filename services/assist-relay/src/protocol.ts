import type * as Page from "@opsplane/assist-widget/protocol";
import { type ObjectOptions, type Static, type TProperties, Type } from "@sinclair/typebox";

/**
 * Messages on the two WebSockets, as JSON text frames. The page's side is declared by the widget
 * (`@opsplane/assist-widget/protocol`, plain types); the relay validates every incoming frame against
 * the schemas here, which must accept exactly those types (checked below), and the developer console
 * imports its types from here.
 */

export type { CapturePolicy, OpenedSession, ToWidget } from "@opsplane/assist-widget/protocol";

/**
 * A message or control action with only the fields it declares: the relay forwards what it validated, and a
 * field it does not know (a tampered page's `note`, a developer's `developer`) is refused, not passed on.
 */
const closed: typeof Type.Object = ((properties: TProperties, options?: ObjectOptions) =>
  Type.Object(properties, { additionalProperties: false, ...options })) as typeof Type.Object;

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
  closed({ kind: Type.Literal("click"), id: Type.Integer({ minimum: 0 }) }),
  closed({
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
  closed({
    kind: Type.Literal("select"),
    id: Type.Integer({ minimum: 0 }),
    selected: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 10000 }),
  }),
  closed({ kind: Type.Literal("scroll"), dx: Type.Number(), dy: Type.Number() }),
  /**
   * A key that is not text, pressed in the field `id` (the element focused in the developer's view; absent: the
   * page's focused element). Enter submits a field's form or clicks a button, Tab moves the focus, and the page's
   * own key handlers see each of them.
   */
  closed({
    kind: Type.Literal("key"),
    id: Type.Optional(Type.Integer({ minimum: 0 })),
    key: Type.Union(["Enter", "Tab", "Escape", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight"].map((k) => Type.Literal(k))),
    shift: Type.Boolean(),
  }),
]);
export type ControlAction = Static<typeof ControlAction>;

const RrwebEvents = Type.Array(Type.Object({ type: Type.Integer(), timestamp: Type.Number() }), { minItems: 1, maxItems: 10000 });

/** Widget → relay. */
export const WidgetMessage = Type.Union([
  closed({ t: Type.Literal("rrweb"), events: RrwebEvents }),
  closed({ t: Type.Literal("console"), entries: Type.Array(ConsoleEntry, { minItems: 1, maxItems: 1000 }) }),
  closed({ t: Type.Literal("network"), entries: Type.Array(NetworkEntry, { minItems: 1, maxItems: 1000 }) }),
  closed({ t: Type.Literal("panel"), open: Type.Boolean() }),
  closed({ t: Type.Literal("control-response"), granted: Type.Boolean() }),
  /** The operator took control back (`reason`: why, when the page did it by itself, e.g. its tab was hidden). */
  closed({ t: Type.Literal("control-revoke"), reason: Type.Optional(Type.String({ maxLength: 200 })) }),
  /** The page did not apply a control action (e.g. an edit made on a stale view of the field); passed on to the developer. */
  closed({ t: Type.Literal("control-refused"), reason: Type.String({ maxLength: 500 }) }),
  closed({ t: Type.Literal("end") }),
]);
export type WidgetMessage = Static<typeof WidgetMessage>;

/** Developer console → relay. */
export const DeveloperMessage = Type.Union([
  closed({ t: Type.Literal("control-request") }),
  closed({ t: Type.Literal("control-release") }),
  closed({ t: Type.Literal("control"), action: ControlAction }),
  closed({ t: Type.Literal("panel"), open: Type.Boolean() }),
  closed({ t: Type.Literal("snapshot-request") }),
  /** Where the developer points in the live view (page coordinates of the operator's viewport); shown on the operator's page. */
  closed({ t: Type.Literal("pointer"), x: Type.Number(), y: Type.Number() }),
]);
export type DeveloperMessage = Static<typeof DeveloperMessage>;

/** Relay → developer console: the widget's stream plus the relay's own notices. */
export type ToDeveloper =
  | Extract<WidgetMessage, { t: "rrweb" | "console" | "network" | "panel" }>
  /** Control refused to `developer` (absent: to whoever receives it); every console of the session gets it and the others ignore it. */
  | { t: "control-refused"; reason: string; developer?: string }
  | { t: "control-state"; granted: boolean; developer: string; by: "operator" | "developer" | "relay"; reason?: string }
  | { t: "operator"; connected: boolean }
  | { t: "session-ended"; by: string }
  | { t: "error"; reason: string };

/** Whether two types accept the same values. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Fails to compile when a schema and the widget's type for it drift apart. */
export type SchemasMatchWidget<
  T extends true[] = [
    Same<ConsoleEntry, Page.ConsoleEntry>,
    Same<NetworkEntry, Page.NetworkEntry>,
    Same<ControlAction, Page.ControlAction>,
    Same<WidgetMessage, Page.WidgetMessage>,
  ],
> = T;

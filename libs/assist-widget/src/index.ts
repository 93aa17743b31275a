import { AssistWidget, type WidgetOptions } from "./widget.js";

export type { ConsoleEntry, NetworkEntry } from "./protocol.js";
export type { AssistWidget, WidgetOptions };

/** Mounts the assistance widget on the current page (`import { startAssistWidget } from "@opsplane/assist-widget"`). */
export function startAssistWidget(opts: WidgetOptions): AssistWidget {
  const widget = new AssistWidget(opts);
  if (document.body) widget.mount();
  else document.addEventListener("DOMContentLoaded", () => widget.mount(), { once: true });
  return widget;
}

import { AssistWidget, type WidgetOptions } from "./widget.js";

export type { WidgetOptions };

/** Mounts the assistance widget on the current page (for `import { startAssistWidget } from "@opsplane/assist-relay/widget"`). */
export function startAssistWidget(opts: WidgetOptions): AssistWidget {
  const widget = new AssistWidget(opts);
  if (document.body) widget.mount();
  else document.addEventListener("DOMContentLoaded", () => widget.mount(), { once: true });
  return widget;
}

import { record } from "@rrweb/record";
import type { ControlAction } from "../../src/protocol.js";

const valueSetter = (el: HTMLInputElement | HTMLTextAreaElement) =>
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el) as object, "value")?.set;

/**
 * Applies a developer's action to the operator's page. Targets are rrweb
 * mirror ids, the same ids the developer's replay uses. The widget's own UI
 * (consent, banner, key) can never be a target.
 */
export function applyControl(action: ControlAction, widgetRoot: Element): boolean {
  if (action.kind === "scroll") {
    window.scrollBy(action.dx, action.dy);
    return true;
  }
  const node = record.mirror.getNode(action.id);
  if (!(node instanceof HTMLElement) || widgetRoot.contains(node)) return false;
  if (action.kind === "click") {
    node.focus();
    node.click();
    return true;
  }
  if (!(node instanceof HTMLInputElement || node instanceof HTMLTextAreaElement)) return false;
  // The native setter, so frameworks that track the value (React) see the change.
  valueSetter(node)?.call(node, action.value);
  node.dispatchEvent(new Event("input", { bubbles: true }));
  node.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
}

import { record } from "@rrweb/record";
import type { ControlAction } from "../../src/protocol.js";

const valueSetter = (el: HTMLInputElement | HTMLTextAreaElement) =>
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el) as object, "value")?.set;

/** Tells the page's own listeners (and frameworks such as React) that the field changed, as typing would. */
function announce(node: HTMLElement): void {
  node.dispatchEvent(new Event("input", { bubbles: true }));
  node.dispatchEvent(new Event("change", { bubbles: true }));
}

/**
 * Applies a developer's action to the operator's page; returns why it was not
 * applied, or undefined when it was. Targets are rrweb mirror ids, the same
 * ids the developer's replay uses. The widget's own UI (consent, banner, key)
 * can never be a target.
 *
 * An edit changes the characters it names in the field's real value: the
 * developer only ever sees masked fields as `*`, one per character, so their
 * offsets are offsets in the real value, and an edit made on a view of
 * another length (the operator typed meanwhile, or the view could not show
 * the field) is refused rather than applied at the wrong place. Password
 * fields refuse edits: the operator could not see what was typed there.
 */
export function applyControl(action: ControlAction, widgetRoot: Element): string | undefined {
  if (action.kind === "scroll") {
    window.scrollBy(action.dx, action.dy);
    return undefined;
  }
  const node = record.mirror.getNode(action.id);
  if (!(node instanceof HTMLElement) || widgetRoot.contains(node)) return "that element is not on the operator's page any more";
  if (action.kind === "click") {
    node.focus();
    node.click();
    return undefined;
  }
  if (action.kind === "select") {
    if (!(node instanceof HTMLSelectElement)) return "only a list (select) can have options chosen";
    if (node.disabled) return "the list is disabled on the operator's page";
    if (action.selected.some((i) => i >= node.options.length)) return "the list on the operator's page has other options; look again";
    for (const option of node.options) option.selected = action.selected.includes(option.index);
    announce(node);
    return undefined;
  }
  if (!(node instanceof HTMLInputElement || node instanceof HTMLTextAreaElement)) return "only text fields can be typed into";
  if (node.disabled || node.readOnly) return "the field is read-only on the operator's page";
  // The operator sees every other field's real value as it is edited for them, but not a password's: what goes there they type themselves.
  if (node instanceof HTMLInputElement && node.type === "password") return "password fields are typed by the operator only";
  const value = node.value;
  if (value.length !== action.length || action.end > value.length || action.start > action.end)
    return "the field on the operator's page no longer matches your view (it changed, or it cannot be shown masked); nothing was typed";
  // The native setter, so frameworks that track the value (React) see the change.
  valueSetter(node)?.call(node, value.slice(0, action.start) + action.text + value.slice(action.end));
  // Setting the value moved the caret to the end; an operator watching the field sees it where the edit was.
  if (document.activeElement === node && node.selectionStart !== null)
    node.setSelectionRange(action.start + action.text.length, action.start + action.text.length);
  announce(node);
  return undefined;
}

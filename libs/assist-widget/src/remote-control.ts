import { record } from "@rrweb/record";
import { pressKey } from "./key-press.js";
import type { ControlAction } from "./protocol.js";

const valueSetter = (el: HTMLInputElement | HTMLTextAreaElement) =>
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el) as object, "value")?.set;

/** Whether offset `i` of `s` falls between the two halves of a surrogate pair (one emoji, shown masked as `**`). */
const splitsPair = (s: string, i: number) => /[\uD800-\uDBFF]/.test(s.charAt(i - 1)) && /[\uDC00-\uDFFF]/.test(s.charAt(i));

/**
 * Widens [start, end) to whole characters of the real value: a deletion that cuts a pair removes
 * the whole character, an insertion inside a pair lands after it. The page never holds half an emoji.
 */
function wholeCharacters(value: string, start: number, end: number): { start: number; end: number } {
  if (start === end) return splitsPair(value, start) ? { start: start + 1, end: end + 1 } : { start, end };
  return { start: splitsPair(value, start) ? start - 1 : start, end: splitsPair(value, end) ? end + 1 : end };
}

/**
 * Fields where a widened edit left the developer's view a unit off, with the value it left: the developer's
 * next edit there, while the field still holds that value, is refused, which shows them the field again.
 */
const viewOffByWidening = new WeakMap<Element, string>();

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
 * the field) is refused rather than applied at the wrong place. The view
 * shows one `*` per UTF-16 unit, so an edit can name half of an emoji; it is
 * widened to whole characters; the view is then a unit off, so the next edit
 * there (unless the field changed meanwhile) is refused, which shows the
 * developer the field again. Password
 * fields refuse edits: the operator could not see what was typed there.
 */
export function applyControl(action: ControlAction, widgetRoot: Element): string | undefined {
  if (action.kind === "scroll") {
    window.scrollBy(action.dx, action.dy);
    return undefined;
  }
  if (action.kind === "key") {
    const target = action.id === undefined ? document.activeElement : record.mirror.getNode(action.id);
    if (!(target instanceof HTMLElement) || widgetRoot.contains(target)) return "that element is not on the operator's page any more";
    pressKey(action, target, widgetRoot);
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
  // Nor a hidden field's, which the operator never sees at all (a recipient account behind a visible name).
  if (node instanceof HTMLInputElement && node.type === "hidden") return "hidden fields are not edited remotely";
  const value = node.value;
  const leftByWidening = viewOffByWidening.get(node);
  viewOffByWidening.delete(node);
  if (leftByWidening === value)
    return "your view of the field was a character off (a character such as an emoji shows as **); it is shown again, nothing was typed";
  if (value.length !== action.length || action.end > value.length || action.start > action.end)
    return "the field on the operator's page no longer matches your view (it changed, or it cannot be shown masked); nothing was typed";
  const { start, end } = wholeCharacters(value, action.start, action.end);
  // Lone surrogates in the text (never typed, only forged) would be half characters too.
  const text = action.text.replace(/\p{Cs}/gu, "");
  // The native setter, so frameworks that track the value (React) see the change.
  valueSetter(node)?.call(node, value.slice(0, start) + text + value.slice(end));
  // Setting the value moved the caret to the end; an operator watching the field sees it where the edit was.
  if (document.activeElement === node && node.selectionStart !== null) node.setSelectionRange(start + text.length, start + text.length);
  if (start !== action.start || end !== action.end) viewOffByWidening.set(node, node.value);
  announce(node);
  return undefined;
}

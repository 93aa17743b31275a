import type { ControlAction } from "./protocol.js";

type KeyAction = Extract<ControlAction, { kind: "key" }>;

const focusable =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** The next (or, with Shift, previous) element Tab reaches in document order, outside the widget's own UI. */
function tabTarget(from: Element | null, backwards: boolean, widgetRoot: Element): HTMLElement | undefined {
  const order = [...document.querySelectorAll<HTMLElement>(focusable)].filter((el) => !widgetRoot.contains(el) && el.offsetParent !== null);
  if (!order.length) return undefined;
  const at = from ? order.indexOf(from as HTMLElement) : -1;
  const next = backwards ? (at <= 0 ? order.length - 1 : at - 1) : (at + 1) % order.length;
  return order[next];
}

/**
 * Presses a key on the operator's page as a user would: the page's own key handlers see keydown and
 * keyup (an autocomplete list follows the arrows, a dialog closes on Escape), and what the browser
 * itself would do, which synthetic events do not, is done here unless a handler prevented it: Enter
 * submits a field's form or clicks a button or link, Tab moves the focus.
 */
export function pressKey(action: KeyAction, target: HTMLElement, widgetRoot: Element): void {
  const init = { key: action.key, code: action.key, shiftKey: action.shift, bubbles: true, cancelable: true, composed: true };
  if (document.activeElement !== target) target.focus();
  const proceed = target.dispatchEvent(new KeyboardEvent("keydown", init));
  if (proceed) {
    if (action.key === "Tab") tabTarget(target, action.shift, widgetRoot)?.focus();
    if (action.key === "Enter") {
      if (target instanceof HTMLInputElement && target.form) target.form.requestSubmit();
      else if (target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement) target.click();
    }
  }
  (document.activeElement ?? target).dispatchEvent(new KeyboardEvent("keyup", init));
}

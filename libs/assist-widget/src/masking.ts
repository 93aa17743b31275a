import { maskedSelectValue, type Sanitiser } from "./sanitiser.js";

/**
 * What never leaves the operator's browser as it is. Every input is masked unless it matches the
 * allow list, and some stay masked even then: passwords, card fields, anything marked
 * `data-assist-mask`, and fields named like the relay's masked keys (`ASSIST_MASKED_KEYS`:
 * `idNo`, `sfzh`, `acctNo`, `mobile`, …). Text and allow-listed values go through the sanitiser.
 */
export function isSensitive(el: Element, sanitiser: Sanitiser): boolean {
  if (el.closest("[data-assist-mask]")) return true;
  if (el instanceof HTMLInputElement) {
    if (el.type === "password" || el.type === "hidden") return true;
    if (/^cc-/.test(el.autocomplete)) return true;
  }
  return [el.getAttribute("name"), el.id].some((name) => name && sanitiser.sensitiveKey(name));
}

/** Whether a field's value may be streamed (sanitised): allow-listed and not sensitive. */
export const isShown = (el: Element, unmaskedSelector: string, sanitiser: Sanitiser) =>
  unmaskedSelector !== "" && el.matches(unmaskedSelector) && !isSensitive(el, sanitiser);

/** rrweb's maskInputFn: shows the value (sanitised) only for allow-listed, non-sensitive inputs. */
export function inputMasker(unmaskedSelector: string, sanitiser: Sanitiser) {
  return (text: string, el: HTMLElement): string => {
    const allowed = isShown(el, unmaskedSelector, sanitiser);
    // A masked list shows the same placeholder whichever option is chosen: `*` per character would tell the option by its length.
    if (!allowed && el.localName === "select") return maskedSelectValue;
    // One `*` per UTF-16 unit, so offsets in the developer's view are offsets in the real value; line
    // breaks stay, so the caret moves over a masked textarea's lines (Home, End, arrows) as over the real ones.
    return allowed ? sanitiser.text(text) : text.replace(/[^\n]/g, "*");
  };
}

/** rrweb's maskTextFn, called for every text node: `data-assist-mask` hides all of it, the sanitiser the rest. */
export function textMasker(sanitiser: Sanitiser) {
  return (text: string, el: HTMLElement | null): string =>
    el?.closest("[data-assist-mask]") ? text.replace(/\S/g, "*") : sanitiser.text(text);
}

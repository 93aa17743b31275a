/**
 * What never leaves the operator's browser. Every input is masked unless it
 * matches the allow list, and some fields stay masked even then: passwords,
 * card numbers, ID numbers and anything marked `data-assist-mask`.
 */
const sensitiveName = /pass(word|wd)?|pin|cvv|cvc|card|pan\b|id.?(no|num|card)|idcard|ssn|passport|cert(ificate)?.?no/i;

export function isSensitive(el: Element): boolean {
  if (el.closest("[data-assist-mask]")) return true;
  if (el instanceof HTMLInputElement) {
    if (el.type === "password") return true;
    if (/^cc-/.test(el.autocomplete)) return true;
  }
  return sensitiveName.test(`${el.getAttribute("name") ?? ""} ${el.id} ${el.getAttribute("autocomplete") ?? ""}`);
}

/** rrweb's maskInputFn: shows the value only for allow-listed, non-sensitive inputs. */
export function inputMasker(unmaskedSelector: string) {
  return (text: string, el: HTMLElement): string => {
    const allowed = unmaskedSelector !== "" && el.matches(unmaskedSelector) && !isSensitive(el);
    // One `*` per UTF-16 unit, so offsets in the developer's view are offsets in the real value; line
    // breaks stay, so the caret moves over a masked textarea's lines (Home, End, arrows) as over the real ones.
    return allowed ? text : text.replace(/[^\n]/g, "*");
  };
}

/**
 * Masks captured request and response bodies: values of sensitive JSON keys,
 * then anything shaped like a card number or a Chinese resident ID number,
 * then cuts the result to `maxBytes`.
 */
export function bodyMasker(maskedKeys: string, maxBytes: number) {
  const keyPattern = new RegExp(maskedKeys, "i");
  const maskJson = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(maskJson);
    if (value && typeof value === "object")
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, keyPattern.test(k) ? "***" : maskJson(v)]));
    return value;
  };
  return (body: string): string => {
    let text = body;
    try {
      text = JSON.stringify(maskJson(JSON.parse(body)));
    } catch {
      // Not JSON: only the pattern masks below apply.
    }
    text = text.replace(/\b\d{17}[\dXx]\b/g, "***ID***").replace(/\b(?:\d[ -]?){12,18}\d\b/g, "***CARD***");
    return text.length > maxBytes ? `${text.slice(0, maxBytes)}…(${text.length - maxBytes} more)` : text;
  };
}

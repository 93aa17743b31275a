import type { ConsoleEntry, NetworkEntry } from "./protocol.js";

/**
 * The one sanitiser of everything that leaves the operator's page: the widget applies it before
 * sending (page text, console lines, API calls, the history sent to a developer who joins) and the
 * relay applies it again to every frame it forwards or records, so a widget that was not updated
 * or was tampered with cannot put a card number into the developer's view or the recording. Pure
 * string work, no Node or DOM API: the same code runs in both places. Idempotent, so applying it
 * twice changes nothing.
 */

/** How the relay configures it (`ASSIST_MASKED_KEYS`, `ASSIST_NETWORK_BODY_URLS`, `ASSIST_NETWORK_BODY_MAX_BYTES`). */
export interface SanitiserConfig {
  /** Case-insensitive regular expression: JSON keys, form fields, query parameters and input names whose values are masked. */
  maskedKeys: string;
  /** Regular expressions (compiled from picomatch patterns) of the URL paths whose request and response bodies may be captured. */
  networkBodyUrls: string[];
  /** Captured bodies are cut to this many characters after masking. */
  networkBodyMaxBytes: number;
}

export interface Sanitiser {
  /** Card and resident ID numbers, mobile numbers, e-mail addresses, sensitive query parameters and `"key": value` pairs in free text. */
  text(text: string): string;
  /** A captured body: JSON is masked by key and stays valid JSON; anything else as text; then cut to the size limit. */
  body(body: string): string;
  /** Whether a field or parameter of this name is sensitive. */
  sensitiveKey(name: string): boolean;
  /** Whether the bodies of a call to this URL may be captured at all. */
  capturesBody(url: string): boolean;
  /** Only the fields the protocol declares, the text masked. */
  console(entry: ConsoleEntry): ConsoleEntry;
  /** Only the fields the protocol declares; the URL and error masked; bodies only for the paths that capture them, masked. */
  network(entry: NetworkEntry): NetworkEntry;
  /**
   * Every string in rrweb events (text nodes, attributes such as `href`, input values, the page URL), and the values of
   * the fields that stay masked whatever the page's allow list (see `rrwebStream`) in the full snapshots among them.
   */
  rrweb<T>(events: T[]): T[];
  /**
   * `rrweb` for one page's stream, in order: it remembers which nodes are such fields (passwords, `cc-*` autocomplete,
   * names like a masked key, anything inside `[data-assist-mask]`) from the snapshots and added nodes, so their
   * values in later input events and attribute changes are masked too.
   */
  rrwebStream(): <T>(events: T[]) => T[];
}

/** What a masked list (`<select>`) shows as its value, whichever option is chosen: the same width for every option. */
export const maskedSelectValue = "***";

export const masked = "***";

/** Nesting past which a frame is refused: rrweb nests two levels per DOM level, and pages stay far under 250 DOM levels. */
export const maxNesting = 500;
/** A frame nested past `maxNesting` (walking it would exhaust the stack: 20,000 levels in 40 KB stopped the relay). */
export class NestedTooDeep extends Error {
  constructor() {
    super(`nested deeper than ${maxNesting} levels`);
  }
}
const truncatedMark = "…[truncated]";

const luhnValid = (digits: string) => {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
};

/**
 * Luhn-valid, with an issuer's first digit (2–6; 13 digits only for Visa's 4), so a 13-digit
 * millisecond timestamp (1…) or an order number that happens to pass Luhn is left alone.
 */
const isCardNumber = (digits: string) =>
  digits.length >= 13 && digits.length <= 19 && (digits.length === 13 ? digits[0] === "4" : /^[2-6]/.test(digits)) && luhnValid(digits);

const idWeights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/** A Chinese resident identity number: 17 digits and the ISO 7064 MOD 11-2 check character. */
const isResidentId = (id: string) => {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (id.charCodeAt(i) - 48) * idWeights[i]!;
  return "10X98765432"[sum % 11] === id[17]!.toUpperCase();
};

/** Masks keep the length (and a card's or ID's last four), so a masked allow-listed field still lines up with its edits. */
const keepLast4 = (s: string) => {
  let seen = 0;
  return [...s]
    .reverse()
    .map((c) => (/\d|X|x/.test(c) && seen++ >= 4 ? "*" : c))
    .reverse()
    .join("");
};

/**
 * Characters that show as nothing (NUL, soft hyphen, zero-width ones): between a number's digits they would hide it
 * from the rules while the developer reads it unbroken, so they may sit between any two.
 */
const invisible = String.raw`\0\u00ad\u200b-\u200d\u2060\ufeff`;
// Numbers are found with digits on neither side, so "acct6222…" is caught and a longer digit run is not cut into a card.
const residentIdPattern = new RegExp(String.raw`(?<!\d)\d(?:[${invisible}]?\d){16}[${invisible}]?[\dXx](?![\dA-Za-z])`, "g");
const invisibleChars = new RegExp(`[${invisible}]`, "g");
/**
 * Between a card number's digits: a space, a dash, a dot, an invisible character, or a space or dash as a URL or form
 * encodes it (`%20`, `%2D`, `+`). A number may start right after an encoded one (`card=%206222…`), not inside it.
 */
const cardSeparator = String.raw`(?:[ .+\-${invisible}]|%20|%2[Dd])`;
const cardPattern = new RegExp(String.raw`(?:(?<!\d)(?!(?<=%)2[0Dd])|(?<=%20|%2[Dd]))\d(?:${cardSeparator}?\d){12,18}(?!\d)`, "g");
const cardSeparators = new RegExp(cardSeparator, "g");
/** A card number with only its last four digits left: the digits of an encoded separator (`%20`) are not the number's. */
const maskCard = (run: string) => {
  const parts = run.split(new RegExp(`(${cardSeparator})`));
  let seen = 0;
  // Even places hold digits, odd ones the separators between them.
  for (let i = parts.length - 1; i >= 0; i -= 2)
    parts[i] = [...parts[i]!]
      .reverse()
      .map((c) => (seen++ >= 4 ? "*" : c))
      .reverse()
      .join("");
  return parts.join("");
};
/** A mainland mobile number, with or without the country code (`+86`, `0086`, `86`), spaces or dashes between its groups. */
const mobilePattern = new RegExp(
  String.raw`(?<!\d)(?:(?:\+|00)86[ -]?|86)?1[${invisible}]?[3-9][${invisible}]?\d(?:[ \-${invisible}]?\d(?:[${invisible}]?\d){3}){2}(?!\d)`,
  "g",
);
const imageFile = /\.(png|jpe?g|gif|svg|webp|avif|ico)$/i;
// A match starts only where a local part can start (not inside a run of its characters) and each part is bounded,
// so the search stays linear: unbounded, 32,000 letters and an "@" took 1.5 s and 96 KB of "b.1" 10 s.
const emailPattern =
  /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z])/g;
/** `?name=value` / `&name=value` (URLs, form bodies, text quoting either); a form body's first field starts the string. */
const paramPattern = /(^|[?&;#])([^=&#\s"'<>?]{1,64})=([^&#\s"'<>]*)/g;
/** A value after a key: a quoted string (`"…"`, `'…'`, or escaped inside another string, `\"…\"`), or a bare word or number. */
const pairValue = String.raw`(\\+"[^]*?\\+"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\])"'\\<>]+)`;
/**
 * `"key": value` in text that is not (or no longer, once cut) parseable JSON, such as a console line, also when that JSON
 * is itself a string inside JSON (`{\"otp\":\"123456\"}`); and `key: value` / `key=value` with a bare name (`otp: 123456`).
 * A bare name has no `-`, so CSS declarations (`animation-name: spin`) are not taken for one.
 */
const pairPattern = new RegExp(
  String.raw`(\\*["'])([^"'\\\s]{1,64})\1(\s*:\s*)${pairValue}|(?<![\w$.\\-])([A-Za-z_$][\w$.]{0,63})(\s*[:=]\s*)${pairValue}`,
  "g",
);
/** Whether a string may hold anything a rule matches: digits, `@`, `=` or `:`, or characters NFKC turns into those. */
const mayMatch = /[\d@=:]|[\u0080-\uffff]/;

/**
 * The string the rules read: each character NFKC turns into a single one (full-width digits `１３８`, `＋`, `＠`, `：`,
 * the ideographic space) replaced by it, so the rules see `138`; one character for one, so a match's place is its
 * place in the original, whose other characters are kept as they were.
 */
const foldForMatching = (s: string) =>
  /[\u0080-\uffff]/.test(s)
    ? s.replace(/[\u0080-\uffff]/g, (c) => {
        const n = c.normalize("NFKC");
        return n.length === 1 ? n : c;
      })
    : s;

/** A string as shown (`shown`) and as the rules read it (`read`, the same length): a replacement goes into both at the same place. */
interface Folded {
  shown: string;
  read: string;
}

/** `replace` gets the match as read and the same characters as shown, to keep what it does not mask as it was. */
function replaceFolded(t: Folded, pattern: RegExp, replace: (match: RegExpMatchArray, shown: string) => string): Folded {
  if (t.shown === t.read) {
    const out = t.read.replace(pattern, (...args) => replace(args.slice(0, -2) as unknown as RegExpMatchArray, args[0] as string));
    return { shown: out, read: out };
  }
  let shown = "";
  let read = "";
  let last = 0;
  for (const m of t.read.matchAll(pattern)) {
    const start = m.index!;
    const replacement = replace(m, t.shown.slice(start, start + m[0].length));
    // Unchanged: the original characters stay (full-width ones too).
    if (replacement === m[0]) continue;
    shown += t.shown.slice(last, start) + replacement;
    read += t.read.slice(last, start) + replacement;
    last = start + m[0].length;
  }
  return { shown: shown + t.shown.slice(last), read: read + t.read.slice(last) };
}

/** Keeps a mobile number's first three digits and last four (`138****5678`, `+86 138 **** 5678`). */
const maskMobile = (m: string) => {
  let fromEnd = 0;
  return [...m]
    .reverse()
    .map((c) => (/\d/.test(c) && ++fromEnd > 4 && fromEnd <= 8 ? "*" : c))
    .reverse()
    .join("");
};

function maskNumbersFolded(t: Folded): Folded {
  let out = replaceFolded(t, residentIdPattern, ([id]) => (isResidentId(id!.replace(invisibleChars, "")) ? keepLast4(id!) : id!));
  out = replaceFolded(out, cardPattern, ([run]) => (isCardNumber(run!.replace(cardSeparators, "")) ? maskCard(run!) : run!));
  out = replaceFolded(out, mobilePattern, ([m]) => maskMobile(m!));
  return replaceFolded(out, emailPattern, ([e]) => {
    // `logo@2x.png` is an image, not an address.
    if (imageFile.test(e!)) return e!;
    const at = e!.indexOf("@");
    return `${e![0]}${"*".repeat(at - 1)}${e!.slice(at)}`;
  });
}

const maskNumbers = (text: string) => maskNumbersFolded({ shown: text, read: foldForMatching(text) }).shown;

/** rrweb's serialised node (rrweb-snapshot), as far as masking needs it. */
interface SerialNode {
  type: number;
  id: number;
  tagName?: string;
  attributes?: Record<string, unknown>;
  childNodes?: SerialNode[];
  textContent?: string;
}
/** rrweb's node and event types: an element node, a text node; a full snapshot, an incremental one, a mutation, an input. */
const elementNode = 2;
const textNode = 3;
const fullSnapshot = 2;
const incrementalSnapshot = 3;
const mutationSource = 0;
const inputSource = 5;
const hideChars = (value: string) => value.replace(/[^\n]/g, "*");
const hideText = (value: string) => value.replace(/\S/g, "*");
/**
 * Attributes a masked element keeps as they are (still through the text rules): how it is laid out and styled,
 * its images (`src`: a masked panel keeps its pictures), and rrweb's own (`rr_width`, `_cssText`). Any other
 * (`title`, `alt`, `aria-label`, `placeholder`, `href`: a link to `/customers/<name>`, `data-*`, which CSS can
 * show with `attr()`) may hold what the page marked `data-assist-mask` to hide: its characters become `*`, as
 * the element's text does.
 */
const layoutAttribute =
  /^(?:class|id|style|type|role|dir|lang|width|height|colspan|rowspan|span|tabindex|disabled|hidden|rel|target|src|srcset|for|name|data-assist-mask|rr_.*|_.*)$/i;
/** A masked element's attributes: values of any but layout ones hidden; `value` as `maskValue` has it. */
const hideAttributes = (attributes: Record<string, unknown>) => {
  let out: Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value !== "string" || name === "value" || layoutAttribute.test(name) || hideText(value) === value) continue;
    out ??= { ...attributes };
    out[name] = hideText(value);
  }
  return out ?? attributes;
};

const decodeName = (name: string) => {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
};

export function createSanitiser(config: SanitiserConfig): Sanitiser {
  const keyPattern = new RegExp(config.maskedKeys, "i");
  const bodyUrls = config.networkBodyUrls.map((source) => new RegExp(source));
  // `ID-NO`, `Account_Number` and `accountNumber` are one name: tried as written and without separators.
  const sensitiveKey = (name: string) =>
    config.maskedKeys !== "" && (keyPattern.test(name) || keyPattern.test(name.replace(/[-_.\s]/g, "")));

  /** A value masked by its key keeps its quotes: `"***"`, `\"***\"`, `'***'`; a bare one after a quoted key becomes `"***"`, as JSON would have it. */
  const maskedValue = (value: string, keyQuote: string) => {
    const open = /^\\*["']/.exec(value)?.[0];
    if (open) return value.slice(open.length, value.length - open.length) === masked ? value : `${open}${masked}${open}`;
    if (value === masked) return value;
    return keyQuote ? `${keyQuote}${masked}${keyQuote}` : masked;
  };

  const text = (input: string): string => {
    // Most strings (class names, plain words) hold nothing any rule could match.
    if (!mayMatch.test(input)) return input;
    let t: Folded = { shown: input, read: foldForMatching(input) };
    // What comes before a masked value is kept as shown (`ＯＴＰ：` stays full-width).
    t = replaceFolded(t, paramPattern, ([whole, , name, value], shown) =>
      value !== "" && value !== masked && sensitiveKey(decodeName(name!))
        ? `${shown.slice(0, whole!.length - value!.length)}${masked}`
        : whole!,
    );
    t = replaceFolded(t, pairPattern, ([whole, quote, quotedKey, , quotedValue, bareKey, sep, bareValue], shown) => {
      if (quotedKey !== undefined) {
        const pair = shown.slice(0, whole!.length - quotedValue!.length);
        if (sensitiveKey(quotedKey)) return `${pair}${maskedValue(quotedValue!, quote!)}`;
        // A string value may be JSON itself (`{"body":"{\"otp\":…}"}`): its pairs are read too.
        return /^\\*"/.test(quotedValue!) ? `${pair}${text(shown.slice(pair.length))}` : whole!;
      }
      return sensitiveKey(bareKey!) ? `${shown.slice(0, bareKey!.length + sep!.length)}${maskedValue(bareValue!, "")}` : whole!;
    });
    return maskNumbersFolded(t).shown;
  };

  const maskJson = (value: unknown): unknown => {
    if (typeof value === "string") return text(value);
    if (Array.isArray(value)) return value.map(maskJson);
    if (value && typeof value === "object")
      // A key is text too (`{"6222…": {…}}`, an account number used as a map key).
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [text(k), sensitiveKey(k) && v !== null ? masked : maskJson(v)]));
    return value;
  };

  // A bare JSON number that is a card or ID number becomes a masked string before parsing (parsing would round it), so the JSON stays valid.
  const quoteNumbers = (json: string) =>
    json.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (token) => {
      if (token.startsWith('"') || !/^\d{13,19}$/.test(token)) return token;
      const hidden = maskNumbers(token);
      return hidden === token ? token : JSON.stringify(hidden);
    });

  const cut = (s: string) => (s.length > config.networkBodyMaxBytes ? `${s.slice(0, config.networkBodyMaxBytes)}${truncatedMark}` : s);

  const body = (raw: string): string => {
    const start = raw.trimStart()[0];
    if (start === "{" || start === "[") {
      try {
        return cut(JSON.stringify(maskJson(JSON.parse(quoteNumbers(raw)))));
      } catch {
        // Not JSON after all (or cut short): the text rules still find `"key": value` pairs.
      }
    }
    // A body already cut ends with the mark: cutting again keeps it as it was.
    return raw.endsWith(truncatedMark) && raw.length <= config.networkBodyMaxBytes + truncatedMark.length ? text(raw) : cut(text(raw));
  };

  const capturesBody = (url: string) => {
    let path: string;
    try {
      path = new URL(url, "http://relative.invalid").pathname;
    } catch {
      return false;
    }
    return bodyUrls.some((re) => re.test(path));
  };

  // What needs no masking comes back as the very same object, so the relay can tell and forward the frame as it came.
  const walk = (value: unknown, depth = 0): unknown => {
    if (typeof value === "string") return text(value);
    if (depth >= maxNesting && value && typeof value === "object") throw new NestedTooDeep();
    if (Array.isArray(value)) {
      const out = value.map((v) => walk(v, depth + 1));
      return out.some((v, i) => v !== value[i]) ? out : value;
    }
    if (value && typeof value === "object") {
      const entries = Object.entries(value);
      // Keys are text too: an object keyed by a card number carries it as a key.
      const out = entries.map(([k, v]) => [text(k), walk(v, depth + 1)] as const);
      return out.some(([k, v], i) => k !== entries[i]![0] || v !== entries[i]![1]) ? Object.fromEntries(out) : value;
    }
    return value;
  };
  const unlessSame = <T extends object>(before: T, after: T): T =>
    Object.keys(before).length === Object.keys(after).length &&
    Object.entries(after).every(([k, v]) => (before as Record<string, unknown>)[k] === v)
      ? before
      : after;

  /** A field the widget masks even when allow-listed, as `masking.ts` decides from the DOM. */
  // A hidden input's value is never on screen, and rrweb's input masking does not cover it.
  const sensitiveField = (attributes: Record<string, unknown>) =>
    ["password", "hidden"].includes(String(attributes.type ?? "").toLowerCase()) ||
    /^cc-/.test(String(attributes.autocomplete ?? "")) ||
    [attributes.name, attributes.id].some((name) => typeof name === "string" && name !== "" && sensitiveKey(name));

  const rrwebStream = () => {
    /** Nodes whose values or text are masked: sensitive fields (lists: `select`) and everything inside `[data-assist-mask]` or such a field. */
    const hidden = new Map<number, "chars" | "select">();
    const maskValue = (id: number, value: unknown) =>
      typeof value !== "string" ? value : hidden.get(id) === "select" ? maskedSelectValue : hideChars(value);

    const maskNode = (node: SerialNode, inside: boolean): SerialNode => {
      if (node.type === textNode) {
        if (!inside || !node.textContent) return node;
        hidden.set(node.id, "chars");
        const textContent = hideText(node.textContent);
        return textContent === node.textContent ? node : { ...node, textContent };
      }
      const tag = node.tagName?.toLowerCase() ?? "";
      const attributes = node.attributes ?? {};
      const field = tag === "input" || tag === "textarea" || tag === "select";
      // The document and other nodes are not masked themselves; their children are walked.
      const hides = node.type === elementNode && (inside || "data-assist-mask" in attributes || (field && sensitiveField(attributes)));
      if (hides) hidden.set(node.id, tag === "select" ? "select" : "chars");
      let out = node;
      if (hides) {
        const hidden = hideAttributes(attributes);
        const value = maskValue(node.id, attributes.value);
        if (hidden !== attributes || value !== attributes.value)
          out = { ...out, attributes: typeof value === "string" ? { ...hidden, value } : hidden };
      }
      // A masked list's chosen option is not told, by the option either.
      if (inside && tag === "option" && "selected" in attributes) {
        const { selected: _, ...rest } = out.attributes!;
        out = { ...out, attributes: rest };
      }
      if (node.childNodes?.length) {
        const children = node.childNodes.map((child) => maskNode(child, hides));
        if (children.some((c, i) => c !== node.childNodes![i])) out = { ...out, childNodes: children };
      }
      return out;
    };

    type Mutation = {
      adds?: { parentId: number; node: SerialNode }[];
      attributes?: { id: number; attributes: Record<string, unknown> }[];
      texts?: { id: number; value: string | null }[];
    };
    const maskMutation = (data: Mutation): Mutation => {
      const adds = data.adds?.map((a) => {
        const node = maskNode(a.node, hidden.has(a.parentId));
        return node === a.node ? a : { ...a, node };
      });
      const attributes = data.attributes?.map((a) => {
        if (!hidden.has(a.id)) return a;
        const { selected, ...rest } = a.attributes;
        const changed = { ...hideAttributes(rest), ...("value" in rest ? { value: maskValue(a.id, rest.value) } : {}) };
        const same = selected === undefined && Object.entries(changed).every(([k, v]) => a.attributes[k] === v);
        return same ? a : { ...a, attributes: changed };
      });
      const texts = data.texts?.map((t) => (hidden.has(t.id) && t.value ? { ...t, value: hideText(t.value) } : t));
      const same = <T>(before: T[] | undefined, after: T[] | undefined) => !before || before.every((v, i) => v === after![i]);
      return same(data.adds, adds) && same(data.attributes, attributes) && same(data.texts, texts)
        ? data
        : { ...data, ...(adds ? { adds } : {}), ...(attributes ? { attributes } : {}), ...(texts ? { texts } : {}) };
    };

    const maskEvent = (event: unknown): unknown => {
      const e = event as { type?: unknown; data?: Record<string, unknown> };
      if (!e || typeof e !== "object" || !e.data || typeof e.data !== "object") return event;
      if (e.type === fullSnapshot && e.data.node && typeof e.data.node === "object") {
        hidden.clear();
        const node = maskNode(e.data.node as SerialNode, false);
        return node === e.data.node ? event : { ...e, data: { ...e.data, node } };
      }
      if (e.type !== incrementalSnapshot) return event;
      if (e.data.source === mutationSource) {
        const data = maskMutation(e.data as Mutation);
        return data === e.data ? event : { ...e, data };
      }
      if (e.data.source === inputSource && typeof e.data.id === "number" && hidden.has(e.data.id)) {
        const masked = maskValue(e.data.id, e.data.text);
        return masked === e.data.text ? event : { ...e, data: { ...e.data, text: masked } };
      }
      return event;
    };

    return <T>(events: T[]): T[] => {
      const walked = walk(events) as T[];
      const out = walked.map(maskEvent) as T[];
      return out.some((v, i) => v !== walked[i]) ? out : walked;
    };
  };

  return {
    text,
    body,
    sensitiveKey,
    capturesBody,
    // Rebuilt field by field: what the protocol does not declare (a tampered page's `requestHeaders`) is left out.
    console: (entry) => unlessSame(entry, { level: entry.level, text: text(entry.text), at: entry.at }),
    network: (entry) => {
      const { requestBody, responseBody, error } = entry;
      const bodies = capturesBody(entry.url);
      return unlessSame(entry, {
        via: entry.via,
        method: text(entry.method),
        url: text(entry.url),
        status: entry.status,
        startedAt: entry.startedAt,
        durationMs: entry.durationMs,
        ...(bodies && requestBody !== undefined ? { requestBody: body(requestBody) } : {}),
        ...(bodies && responseBody !== undefined ? { responseBody: body(responseBody) } : {}),
        ...(error === undefined ? {} : { error: text(error) }),
      });
    },
    rrweb: <T>(events: T[]) => rrwebStream()(events),
    rrwebStream,
  };
}

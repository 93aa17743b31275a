/** A text field as seen in the developer's live view, just before or just after one edit. */
export interface FieldState {
  value: string;
  /** null for input types without a caret API (number, email, …). */
  selectionStart: number | null;
  selectionEnd: number | null;
}

/** Replace the UTF-16 units [start, end) of the value with `text`. */
export interface Splice {
  start: number;
  end: number;
  text: string;
}

/**
 * The splice that turned `before` into `after`, located by the caret: an edit
 * starts at the earlier of the selection start before it and the caret after
 * it, and leaves the caret at the end of what it inserted. A masked field reads
 * `*****` in the live view, so comparing values alone could not say where a
 * character went; the caret can. Without a caret (number, email inputs, or an
 * edit that left it elsewhere) the values are compared, which is exact when
 * the view shows the real value. Undefined when nothing changed.
 */
export function spliceOf(before: FieldState, after: FieldState): Splice | undefined {
  if (before.value === after.value) return undefined;
  if (before.selectionStart !== null && after.selectionEnd !== null) {
    const start = Math.min(before.selectionStart, after.selectionEnd);
    const end = before.value.length - (after.value.length - after.selectionEnd);
    const fits =
      start <= end &&
      after.value.startsWith(before.value.slice(0, start)) &&
      before.value.slice(end) === after.value.slice(after.selectionEnd);
    if (fits) return { start, end, text: after.value.slice(start, after.selectionEnd) };
  }
  const shorter = Math.min(before.value.length, after.value.length);
  let prefix = 0;
  while (prefix < shorter && before.value[prefix] === after.value[prefix]) prefix++;
  let suffix = 0;
  while (suffix < shorter - prefix && before.value[before.value.length - 1 - suffix] === after.value[after.value.length - 1 - suffix])
    suffix++;
  return { start: prefix, end: before.value.length - suffix, text: after.value.slice(prefix, after.value.length - suffix) };
}

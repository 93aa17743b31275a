import type { OpenedSession } from "./protocol.js";

const storageKey = "opsplane-assist-session";

/**
 * The open session, kept in the tab's sessionStorage so that a page load on the same origin (a
 * navigation, a reload) resumes it instead of ending the stream. sessionStorage is per tab and
 * per origin: another tab, or another site, never sees it. Storage may be unavailable (a
 * sandboxed frame, a privacy setting): then a page load ends the stream, as before.
 */
export const savedSession = {
  load(): OpenedSession | undefined {
    try {
      const text = sessionStorage.getItem(storageKey);
      return text ? (JSON.parse(text) as OpenedSession) : undefined;
    } catch {
      return undefined;
    }
  },
  save(session: OpenedSession): void {
    try {
      sessionStorage.setItem(storageKey, JSON.stringify(session));
    } catch {
      // Not resumable after a page load; the session itself goes on.
    }
  },
  forget(): void {
    try {
      sessionStorage.removeItem(storageKey);
    } catch {
      // Nothing was saved.
    }
  },
};

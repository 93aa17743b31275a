import { type eventWithTime, Replayer } from "rrweb";
import type { ConsoleEntry, NetworkEntry } from "../../src/protocol.js";
import { keepSelectValues } from "./select-values.js";

interface StoredEvent {
  id: number;
  kind: "rrweb" | "console" | "network";
  payload: { events?: eventWithTime[]; entries?: unknown[] };
}

/** What a stored recording holds, read page by page from `GET /assist/sessions/:id/recording`. */
export interface Recording {
  rrweb: eventWithTime[];
  console: ConsoleEntry[];
  network: NetworkEntry[];
}

export async function loadRecording(sessionId: string, apiKey: string): Promise<Recording> {
  const recording: Recording = { rrweb: [], console: [], network: [] };
  for (let after = 0; ; ) {
    const response = await fetch(`/assist/sessions/${encodeURIComponent(sessionId)}/recording?after=${after}&limit=5000`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const body = (await response.json()) as { events?: StoredEvent[]; next?: number | null; message?: string };
    if (!response.ok) throw new Error(body.message ?? `recording not available (${response.status})`);
    for (const e of body.events ?? []) {
      if (e.kind === "rrweb") recording.rrweb.push(...(e.payload.events ?? []));
      else if (e.kind === "console") recording.console.push(...((e.payload.entries ?? []) as ConsoleEntry[]));
      else recording.network.push(...((e.payload.entries ?? []) as NetworkEntry[]));
    }
    if (body.next === null || body.next === undefined) return recording;
    after = body.next;
  }
}

const clock = (ms: number) => {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

/**
 * Plays a finished session's stored stream with rrweb's Replayer (not live
 * mode: the operator's own timestamps drive it), with play, pause and a
 * position slider. Read-only: nothing is sent anywhere.
 */
export class RecordingView {
  private replayer: Replayer | undefined;
  private ticker: number | undefined;
  private stopSelectValues: (() => void) | undefined;

  constructor(
    private readonly player: HTMLElement,
    private readonly seekInput: HTMLInputElement,
    private readonly timeLabel: HTMLElement,
  ) {
    seekInput.addEventListener("input", () => this.seek(Number(seekInput.value)));
  }

  /** Shows the recording at its start; false when it holds no page to show. */
  show(recording: Recording): boolean {
    this.stop();
    this.player.replaceChildren();
    // A page needs a Meta and a full snapshot; anything before the first Meta has no page to apply to.
    const first = recording.rrweb.findIndex((e) => e.type === 4);
    const events = first < 0 ? [] : recording.rrweb.slice(first);
    if (!events.some((e) => e.type === 2)) return false;
    this.replayer = new Replayer(events, { root: this.player, mouseTail: false, showWarning: false, triggerFocus: false });
    this.replayer.on("fullsnapshot-rebuilded", () => {
      this.stopSelectValues?.();
      if (this.document) this.stopSelectValues = keepSelectValues(this.document);
    });
    this.seekInput.max = String(this.totalTime);
    this.seek(0);
    return true;
  }

  get totalTime(): number {
    return this.replayer?.getMetaData().totalTime ?? 0;
  }

  /** The replayed page's document (for tests and automation). */
  get document(): Document | undefined {
    return this.replayer?.iframe.contentDocument ?? undefined;
  }

  play(): void {
    if (!this.replayer) return;
    const at = this.replayer.getCurrentTime();
    this.replayer.play(at >= this.totalTime ? 0 : at);
    this.ticker ??= window.setInterval(() => this.showTime(this.replayer?.getCurrentTime() ?? 0), 250);
  }

  pause(): void {
    this.replayer?.pause();
    this.stopTicker();
  }

  /** Shows the page as it was `ms` after the recording's start (paused there). */
  seek(ms: number): void {
    if (!this.replayer) return;
    this.stopTicker();
    const at = Math.max(0, Math.min(ms, this.totalTime));
    this.replayer.pause(at);
    this.showTime(at);
  }

  private showTime(ms: number): void {
    this.seekInput.value = String(ms);
    this.timeLabel.textContent = `${clock(ms)} / ${clock(this.totalTime)}`;
  }

  private stopTicker(): void {
    if (this.ticker !== undefined) window.clearInterval(this.ticker);
    this.ticker = undefined;
  }

  stop(): void {
    this.stopTicker();
    this.stopSelectValues?.();
    this.replayer?.destroy();
    this.replayer = undefined;
  }
}

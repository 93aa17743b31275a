import { randomUUID } from "node:crypto";
import type { Bus } from "@opsplane/bus";
import { fromEventData, topics } from "@opsplane/contracts";
import type { Logger } from "@opsplane/platform";
import { storableText } from "@opsplane/store";
import { allowedUrl, checkSha256 } from "./artifact-source.js";
import type { ScanRunner } from "./runner.js";
import { artifactNameProblem, basesProblem } from "./scan-request.js";
import type { ScanStore } from "./store.js";

export const CONSUMER_GROUP = "errcode-scanner";

/**
 * Scans every artifact a pipeline publishes. The event id makes the scan idempotent (a
 * redelivered event finds its scan row); the URL must be allow-listed and the sha256 is required,
 * checked against the download before anything is read.
 */
export function subscribeArtifacts(d: { bus: Bus; store: ScanStore; runner: ScanRunner; urlPrefixes: string[]; log: Logger }) {
  return d.bus.subscribe({
    group: CONSUMER_GROUP,
    topics: [topics.artifactPublished.name],
    handler: async (event) => {
      const msg = fromEventData(topics.artifactPublished, event.data);
      const id = randomUUID();
      const url = allowedUrl(msg.url, d.urlPrefixes);
      let sha256: string | undefined;
      let refusal: string | undefined;
      try {
        sha256 = checkSha256(msg.sha256);
        if (!sha256) refusal = "artifact.published events must carry the artifact's sha256";
      } catch (err) {
        refusal = (err as Error).message;
      }
      if (!url) refusal = `${msg.url} is not under an allowed artifact repository`;
      const named = msg.artifactName || (url ? url.pathname.split("/").pop() : "") || "artifact.jar";
      // Checked as a request's are: one NUL in a name failed every redelivery of the event, and no scan said why.
      refusal ??= basesProblem(msg.bases) ?? artifactNameProblem(named);
      const artifactName = storableText(named);
      const bases = msg.bases.map(storableText);
      const system = msg.system ? storableText(msg.system) : undefined;
      const inserted = await d.store.insert({
        id,
        source: "event",
        artifactName,
        url: storableText(url?.href ?? msg.url),
        sha256,
        bases,
        system,
        eventId: storableText(event.id),
        createdBy: storableText(`event:${event.source}`),
      });
      if (!inserted) return; // redelivery: the scan exists already
      d.log.info({ scanId: id, eventId: event.id, url: msg.url }, "artifact published: scan queued");
      // A refused event still gets a (failed) scan, so the refusal is visible where scans are read.
      d.runner.enqueue({
        scanId: id,
        source: "event",
        artifactName,
        url: refusal ? undefined : url?.href,
        refusal,
        sha256,
        bases,
        system,
      });
    },
  });
}

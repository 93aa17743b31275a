import { badRequest } from "@opsplane/platform";

/**
 * Which instances a gray release reaches: those carrying every label in `labels`, or running in
 * one of `pods` ("namespace/name"), or with one of `instanceIds`. Never by IP: pod IPs change with
 * every restart on Kubernetes, which is what breaks IP-based gray releases elsewhere.
 */
export interface GraySelector {
  labels?: Record<string, string>;
  pods?: string[];
  instanceIds?: string[];
}

/** What a selector is matched against: the identity an instance registered with. */
export interface InstanceIdentity {
  instanceId: string;
  labels: Record<string, string>;
  podName: string;
  podNamespace: string;
}

const labelKey = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$/;
const pod = /^[a-z0-9][a-z0-9.-]{0,252}\/[a-z0-9][a-z0-9.-]{0,252}$/;
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function checkSelector(s: GraySelector | undefined): GraySelector {
  const labels = s?.labels ?? {};
  const pods = s?.pods ?? [];
  const instanceIds = s?.instanceIds ?? [];
  if (!Object.keys(labels).length && !pods.length && !instanceIds.length)
    throw badRequest("a gray release needs a selector: labels, pods (namespace/name) or instanceIds");
  for (const [k, v] of Object.entries(labels)) {
    if (!labelKey.test(k)) throw badRequest(`selector label ${JSON.stringify(k)} is not a valid label name`);
    if (typeof v !== "string" || v.length > 253) throw badRequest(`selector label ${k} needs a string value of at most 253 characters`);
  }
  for (const p of pods) if (!pod.test(p)) throw badRequest(`selector pod ${JSON.stringify(p)} must be "namespace/name"`);
  for (const id of instanceIds) if (!uuid.test(id)) throw badRequest(`selector instance id ${JSON.stringify(id)} is not an instance id`);
  if (pods.length + instanceIds.length > 10_000) throw badRequest("a selector names at most 10000 pods and instances");
  return { labels, pods, instanceIds };
}

export function selects(s: GraySelector, i: InstanceIdentity): boolean {
  const labels = Object.entries(s.labels ?? {});
  if (labels.length && labels.every(([k, v]) => i.labels[k] === v)) return true;
  if (i.podName && s.pods?.includes(`${i.podNamespace}/${i.podName}`)) return true;
  return s.instanceIds?.includes(i.instanceId) ?? false;
}

import { randomUUID } from "node:crypto";
import { isIP } from "node:net";
import { badRequest, notFound } from "@opsplane/platform";
import { type Pool, withTransaction } from "@opsplane/store";
import type { ChangeLog } from "./change-log.js";
import type { Viewer } from "./effective.js";
import { envPattern } from "./identifiers.js";

/** What an instance registers with (seed step 4). */
export interface Registration {
  env?: string;
  hostName?: string;
  ip?: string;
  servicePort?: number;
  sdkPort?: number;
  startParams?: Record<string, string>;
  labels?: Record<string, string>;
  podName?: string;
  podNamespace?: string;
  appVersion?: string;
  systemDomain?: string;
}

export interface InstanceView {
  instanceId: string;
  appId: string;
  env: string;
  hostName: string;
  ip: string;
  servicePort: number;
  sdkPort: number;
  startParams: Record<string, string>;
  labels: Record<string, string>;
  podName: string;
  podNamespace: string;
  appVersion: string;
  state: string;
  registeredAt: string;
  connectedAt: string;
  lastHeartbeatAt: string;
  offlineAt: string;
  onlineSeconds: number;
  ackedVersion: number;
}

interface InstanceRow {
  id: string;
  app_id: string;
  env: string;
  host_name: string;
  ip: string;
  service_port: number;
  sdk_port: number;
  start_params: Record<string, string>;
  labels: Record<string, string>;
  pod_name: string;
  pod_namespace: string;
  app_version: string;
  state: string;
  registered_at: Date;
  connected_at: Date | null;
  last_heartbeat_at: Date | null;
  offline_at: Date | null;
  online_ms: number;
  acked_version: number;
}

const labelKey = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$/;
const dnsLabel = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const hostName = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Who an instance is, as pushes and metadata need it; registration never changes it, so it is cached. */
export interface RegisteredInstance extends Viewer {
  appId: string;
  appVersion: string;
}

/**
 * Instances and their lives: registration, the socket's connection and close, heartbeats (kept in
 * memory and written in batches), and the sweep that marks silent instances offline with the
 * time their heartbeats stopped. Rows are kept after going offline: they are the app's history.
 */
export class InstanceStore {
  private readonly identities = new Map<string, RegisteredInstance>();

  constructor(
    private readonly pool: Pool,
    private readonly changes: ChangeLog,
  ) {}

  async register(appId: string, r: Registration): Promise<RegisteredInstance> {
    const reg = checkRegistration(r);
    const id = randomUUID();
    await this.pool.query(
      `INSERT INTO instances (id, app_id, env, host_name, ip, service_port, sdk_port, start_params, labels, pod_name, pod_namespace, app_version)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
      [
        id,
        appId,
        reg.env,
        reg.hostName,
        reg.ip,
        reg.servicePort,
        reg.sdkPort,
        reg.startParams,
        reg.labels,
        reg.podName,
        reg.podNamespace,
        reg.appVersion,
      ],
    );
    if (reg.systemDomain)
      await this.pool.query("UPDATE apps SET system_domain = $2 WHERE app_id = $1 AND system_domain = ''", [appId, reg.systemDomain]);
    const identity = {
      instanceId: id,
      appId,
      app: appId,
      appVersion: reg.appVersion,
      env: reg.env,
      labels: reg.labels,
      podName: reg.podName,
      podNamespace: reg.podNamespace,
    };
    this.identities.set(id, identity);
    return identity;
  }

  /** The instance's identity; 404 for an unknown id. */
  async identity(id: string): Promise<RegisteredInstance> {
    if (!uuid.test(id)) throw badRequest("instance id must be the id RegisterInstance answered");
    let found = this.identities.get(id);
    if (!found) {
      const row = (
        await this.pool.query<InstanceRow>(
          "SELECT id, app_id, app_version, env, labels, pod_name, pod_namespace FROM instances WHERE id = $1",
          [id],
        )
      ).rows[0];
      if (!row) throw notFound(`no instance ${id}: register it first`);
      found = {
        instanceId: row.id,
        appId: row.app_id,
        app: row.app_id,
        appVersion: row.app_version,
        env: row.env,
        labels: row.labels,
        podName: row.pod_name,
        podNamespace: row.pod_namespace,
      };
      if (this.identities.size >= 200_000) this.identities.delete(this.identities.keys().next().value!);
      this.identities.set(id, found);
    }
    return found;
  }

  /**
   * Records the instance's new connection and numbers it (in commit order, whichever replica):
   * every replica hears of it and closes the instance's older sockets. Returns its number.
   */
  async connected(instance: RegisteredInstance, replica: string, connectionId: string): Promise<number> {
    const id = instance.instanceId;
    const connection = await withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<{ connections: number }>(
        `UPDATE instances SET state = 'online', connected_at = now(), last_heartbeat_at = now(), offline_at = NULL, replica = $2,
           connection_id = $3, connections = connections + 1
         WHERE id = $1 RETURNING connections`,
        [id, replica, connectionId],
      );
      await this.changes.instanceConnected(tx, instance.appId, id, rows[0]!.connections, replica);
      return rows[0]!.connections;
    });
    await this.pool.query("UPDATE apps SET last_active_at = now() FROM instances i WHERE i.id = $1 AND apps.app_id = i.app_id", [id]);
    return connection;
  }

  /**
   * Marks the instance offline unless it has connected again since (elsewhere, or on a new socket), and
   * forgets the closed connection: a heartbeat batch collected before the close but written after it
   * names that connection and so no longer matches (it set the instance online again, and it stayed so
   * until the sweep's timeout).
   */
  async disconnected(id: string, connectionId: string): Promise<void> {
    await this.pool.query(
      `UPDATE instances SET state = 'offline', connection_id = NULL,
         offline_at = CASE WHEN state = 'online' THEN now() ELSE offline_at END,
         online_ms = online_ms + CASE WHEN state = 'online'
           THEN COALESCE((extract(epoch FROM now() - connected_at) * 1000)::bigint, 0) ELSE 0 END
       WHERE id = $1 AND connection_id = $2`,
      [id, connectionId],
    );
  }

  /** Writes a batch of heartbeats and acknowledgements (connection id → highest acked version). */
  async heartbeats(beats: Array<{ id: string; connectionId: string; ackedVersion: number }>): Promise<void> {
    if (!beats.length) return;
    await this.pool.query(
      `UPDATE instances i SET last_heartbeat_at = now(), acked_version = GREATEST(i.acked_version, b.acked),
         state = 'online', offline_at = NULL
       FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS b(id, connection_id, acked)
       WHERE i.id = b.id AND i.connection_id = b.connection_id`,
      [beats.map((b) => b.id), beats.map((b) => b.connectionId), beats.map((b) => b.ackedVersion)],
    );
    await this.pool.query(
      "UPDATE apps SET last_active_at = now() WHERE app_id IN (SELECT DISTINCT app_id FROM instances WHERE id = ANY($1::uuid[]))",
      [beats.map((b) => b.id)],
    );
  }

  /**
   * Instances silent for longer than `timeoutMs` (their replica died, or they never connected) go
   * offline, dated when their heartbeats stopped. Returns how many.
   */
  async sweep(timeoutMs: number): Promise<number> {
    const { rowCount } = await this.pool.query(
      `UPDATE instances SET state = 'offline',
         offline_at = COALESCE(last_heartbeat_at, registered_at),
         online_ms = online_ms + COALESCE((extract(epoch FROM last_heartbeat_at - connected_at) * 1000)::bigint, 0)
       WHERE state <> 'offline' AND COALESCE(last_heartbeat_at, registered_at) < now() - make_interval(secs => $1::float8 / 1000)`,
      [timeoutMs],
    );
    return rowCount ?? 0;
  }

  async list(appId: string, state: string | undefined, limit = 100): Promise<InstanceView[]> {
    if (state && !["registered", "online", "offline"].includes(state)) throw badRequest("state must be registered, online or offline");
    const { rows } = await this.pool.query<InstanceRow>(
      `SELECT * FROM instances WHERE app_id = $1 AND ($2::text IS NULL OR state = $2) ORDER BY registered_at DESC LIMIT $3`,
      [appId, state || null, Math.min(limit || 100, 1000)],
    );
    return rows.map(instanceView);
  }
}

function instanceView(r: InstanceRow): InstanceView {
  const liveMs = r.state === "online" && r.connected_at ? Date.now() - r.connected_at.getTime() : 0;
  return {
    instanceId: r.id,
    appId: r.app_id,
    env: r.env,
    hostName: r.host_name,
    ip: r.ip,
    servicePort: r.service_port,
    sdkPort: r.sdk_port,
    startParams: r.start_params,
    labels: r.labels,
    podName: r.pod_name,
    podNamespace: r.pod_namespace,
    appVersion: r.app_version,
    state: r.state,
    registeredAt: r.registered_at.toISOString(),
    connectedAt: r.connected_at?.toISOString() ?? "",
    lastHeartbeatAt: r.last_heartbeat_at?.toISOString() ?? "",
    offlineAt: r.offline_at?.toISOString() ?? "",
    onlineSeconds: Math.floor((r.online_ms + liveMs) / 1000),
    ackedVersion: r.acked_version,
  };
}

function port(v: unknown, field: string, optional: boolean): number {
  if ((v === undefined || v === 0) && optional) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65_535) throw badRequest(`${field} must be a port number (1-65535)`);
  return v;
}

function stringMap(m: unknown, field: string, maxEntries: number, maxValue: number, key: RegExp): Record<string, string> {
  if (m === undefined) return {};
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw badRequest(`${field} must be an object of strings`);
  const entries = Object.entries(m);
  if (entries.length > maxEntries) throw badRequest(`${field} has ${entries.length} entries; at most ${maxEntries}`);
  for (const [k, v] of entries) {
    if (!key.test(k)) throw badRequest(`${field} name ${JSON.stringify(k)} is not allowed (${key.source})`);
    if (typeof v !== "string" || v.length > maxValue || v.includes("\u0000"))
      throw badRequest(`${field}.${k} must be a string of at most ${maxValue} characters without NUL`);
  }
  return m as Record<string, string>;
}

/** Refuses a malformed registration, naming the field. */
export function checkRegistration(r: Registration) {
  const env = r.env ?? "";
  if (!envPattern.test(env)) throw badRequest(`env ${JSON.stringify(env)} is required: 1-32 of a-z 0-9 _ -`);
  if (!r.hostName) throw badRequest("hostName is required: a host name of at most 253 characters");
  if (!hostName.test(r.hostName))
    throw badRequest(
      `hostName ${JSON.stringify(r.hostName)} is not a host name: at most 253 of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit`,
    );
  if (!r.ip || !isIP(r.ip)) throw badRequest(`ip ${JSON.stringify(r.ip ?? "")} is not an IPv4 or IPv6 address`);
  const podName = r.podName ?? "";
  const podNamespace = r.podNamespace ?? "";
  if (podName && !dnsLabel.test(podName)) throw badRequest("podName must be a Kubernetes pod name");
  if (podNamespace && !dnsLabel.test(podNamespace)) throw badRequest("podNamespace must be a Kubernetes namespace");
  if (Boolean(podName) !== Boolean(podNamespace)) throw badRequest("podName and podNamespace go together");
  const appVersion = r.appVersion ?? "";
  if (appVersion.length > 64 || !/^[A-Za-z0-9._+-]*$/.test(appVersion))
    throw badRequest("appVersion must be at most 64 of A-Z a-z 0-9 . _ + -");
  if ((r.systemDomain ?? "").length > 128) throw badRequest("systemDomain must be at most 128 characters");
  return {
    env,
    hostName: r.hostName,
    ip: r.ip,
    servicePort: port(r.servicePort, "servicePort", false),
    sdkPort: port(r.sdkPort, "sdkPort", true),
    startParams: stringMap(r.startParams, "startParams", 200, 4096, /^[\p{L}\p{N}\p{P}\p{S} ]{1,256}$/u),
    labels: stringMap(r.labels, "labels", 64, 253, labelKey),
    podName,
    podNamespace,
    appVersion,
    systemDomain: r.systemDomain ?? "",
  };
}

import type { KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { create, type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { ControlCommandResultSchema, ControlCommandSchema, DialTestRequestSchema, DialTestResponseSchema } from "@opsplane/contracts";
import type { GovernanceControl, SdkLogger } from "../contracts.js";
import { Authenticator } from "./authenticator.js";
import { CommandApplier, commandProblem } from "./commands.js";
import { type DialChecks, dialAnswer } from "./dial.js";
import { parseTerminalKeys } from "./keys.js";
import { ThrottledLog } from "./throttled-log.js";

export const terminalPaths = {
  dial: "/opsplane/v1/dial",
  commands: "/opsplane/v1/commands",
  report: "/opsplane/v1/report",
  status: "/opsplane/v1/status",
} as const;

export interface TerminalOptions {
  /** Default 1818 (seed step 3); 0 picks a free one. */
  port?: number;
  /** Default: every interface (control-center and monitor-center call from other hosts). */
  host?: string;
  /** The registered instance id; until there is one every request is answered 503. */
  instanceId: () => string | undefined;
  log: SdkLogger;
  /** OPSPLANE_TERMINAL_KEYS (the string, or its entries), or keys already parsed. */
  keys: string | readonly string[] | Map<string, KeyObject> | undefined;
  governance: GovernanceControl;
  reporter: { lastJson(): JsonValue | undefined; nextReportAt(): number | undefined };
  dialChecks: DialChecks;
  /** A shutdown command, called after its answer was sent: stop accepting, finish in-flight, close the SDK, exit. */
  onShutdown: (command: { graceMs: number; requestedBy: string }) => unknown;
  /** More fields for `GET /opsplane/v1/status` (the SDK's state, app, env). */
  status?: () => Record<string, unknown>;
  /** Default 64 KiB. */
  maxBodyBytes?: number;
  /** Signed timestamps accepted this far from the clock, default 60 s. */
  windowMs?: number;
  now?: () => number;
}

/** Every field written, zeros and empty maps included: callers reading plain JSON (curl, jq) see the whole shape. */
const explicit = { alwaysEmitImplicit: true } as const;

const errorCodes = { 401: "unauthorized", 429: "too_many_requests", 503: "unavailable" } as const;

/** The default grace a shutdown command gives in-flight requests. */
const defaultGraceMs = 10_000;

/**
 * The SDK's terminal service (seed steps 3, 14, 16): answers monitor-center's dial tests and
 * control-center's commands, and serves the last self-test report and a status view. Every
 * request must be signed (authenticator.ts); a refusal is a 401 naming the reason and one log
 * line at most every 10 s per reason.
 */
export class Terminal {
  private server: Server | undefined;
  private readonly auth: Authenticator;
  private readonly applier: CommandApplier;
  private readonly refusals: ThrottledLog;
  private readonly maxBodyBytes: number;
  private readonly startedAt = Date.now();

  constructor(private readonly options: TerminalOptions) {
    const spec = options.keys;
    const keys = spec instanceof Map ? spec : parseTerminalKeys(typeof spec === "string" ? spec : spec?.join(","), options.log);
    if (keys.size === 0) options.log.warn("terminal: no keys in OPSPLANE_TERMINAL_KEYS, so every dial test and command will be refused");
    this.auth = new Authenticator({ keys, instanceId: options.instanceId, windowMs: options.windowMs, now: options.now });
    this.applier = new CommandApplier(options.governance);
    this.refusals = new ThrottledLog(options.log);
    this.maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  }

  /** Listens; resolves the port (rejects when it is taken: the caller decides what that means for start-up). */
  async start(): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.options.log.error(`terminal: ${req.method} ${req.url} failed: ${(err as Error)?.stack ?? err}`);
        if (!res.headersSent) reply(res, 500, { error: "internal", message: "the terminal failed on this request; see the app's log" });
        else res.destroy();
      });
    });
    server.headersTimeout = 5_000;
    server.requestTimeout = 15_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port ?? 1818, this.options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    return this.port!;
  }

  get port(): number | undefined {
    return (this.server?.address() as AddressInfo | null)?.port;
  }

  /** Stops listening and drops open connections (degrade, close); overrides stay in governance. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? "/";
    const path = target.split("?", 1)[0]!;
    const method = req.method ?? "GET";
    const route = Object.entries(terminalPaths).find(([, p]) => p === path)?.[0];
    if (!route) return reply(res, 404, { error: "not_found", message: `no terminal endpoint ${path}` });
    const expected = route === "dial" || route === "commands" ? "POST" : "GET";
    if (method !== expected) {
      res.setHeader("allow", expected);
      return reply(res, 405, { error: "method_not_allowed", message: `${path} takes ${expected}` });
    }
    const body = await readBody(req, this.maxBodyBytes);
    if (body === undefined) {
      res.setHeader("connection", "close");
      return reply(res, 413, { error: "payload_too_large", message: `request body exceeds ${this.maxBodyBytes} bytes` });
    }
    const verdict = this.auth.check(method, target, req.headers, body);
    if (!verdict.ok) {
      this.refusals.warn(verdict.kind, `terminal: ${method} ${path} from ${req.socket.remoteAddress} refused: ${verdict.reason}`);
      return reply(res, verdict.status, { error: errorCodes[verdict.status], message: verdict.reason });
    }
    switch (route) {
      case "status":
        return reply(res, 200, this.status());
      case "report": {
        const report = this.options.reporter.lastJson();
        if (report !== undefined) return reply(res, 200, report);
        const next = this.options.reporter.nextReportAt();
        return reply(res, 404, {
          error: "not_found",
          message: `no self-test report yet${next !== undefined ? `; the first is due at ${new Date(next).toISOString()}` : ""}`,
        });
      }
      case "dial":
        return this.dial(res, body);
      default:
        return this.command(res, body, verdict.keyId);
    }
  }

  private async dial(res: ServerResponse, body: Buffer): Promise<void> {
    const start = performance.now();
    const request = decode(res, DialTestRequestSchema, body);
    if (!request) return;
    if (request.challenge.length < 16 || request.challenge.length > 256)
      return reply(res, 400, { error: "bad_request", message: "challenge must be 16 to 256 characters" });
    const instanceId = this.options.instanceId()!;
    const checks = await this.options.dialChecks.run(request.challenge);
    const answer = create(DialTestResponseSchema, {
      challenge: request.challenge,
      instanceId,
      answer: dialAnswer(request.challenge, instanceId, checks),
      checks,
      elapsedMs: performance.now() - start,
    });
    reply(res, 200, toJson(DialTestResponseSchema, answer, explicit));
  }

  private command(res: ServerResponse, body: Buffer, keyId: string): void {
    const cmd = decode(res, ControlCommandSchema, body);
    if (!cmd) return;
    const problem = commandProblem(cmd);
    if (problem) {
      reply(res, 400, { error: "bad_request", message: problem });
      return;
    }
    const graceMs = cmd.graceMs ?? defaultGraceMs;
    const applied =
      cmd.kind === "shutdown" ? `shutting down: stops accepting, in-flight requests get ${graceMs} ms` : this.applier.apply(cmd);
    const by = cmd.requestedBy ? ` (requested by ${cmd.requestedBy})` : "";
    this.options.log.info(`terminal: command ${cmd.kind}${cmd.code ? ` ${cmd.code}` : ""} signed by ${keyId}${by}: ${applied}`);
    const result = create(ControlCommandResultSchema, {
      instanceId: this.options.instanceId()!,
      kind: cmd.kind,
      code: cmd.code,
      applied,
      overrides: this.applier.describeOverrides(),
      instanceOffline: this.applier.isInstanceOffline(),
      appliedAt: new Date().toISOString(),
    });
    if (cmd.kind === "shutdown") {
      res.once("finish", () => {
        Promise.resolve()
          .then(() => this.options.onShutdown({ graceMs, requestedBy: cmd.requestedBy }))
          .catch((err: unknown) => this.options.log.error(`terminal: shutdown failed: ${(err as Error)?.message}`));
      });
      res.setHeader("connection", "close");
    }
    reply(res, cmd.kind === "shutdown" ? 202 : 200, toJson(ControlCommandResultSchema, result, explicit));
  }

  private status(): Record<string, unknown> {
    const next = this.options.reporter.nextReportAt();
    return {
      instanceId: this.options.instanceId(),
      ...this.options.status?.(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      instanceOffline: this.applier.isInstanceOffline(),
      overrides: this.applier.describeOverrides(),
      dialChecks: this.options.dialChecks.names(),
      nextReportAt: next !== undefined ? new Date(next).toISOString() : undefined,
      governance: this.options.governance.describe(),
    };
  }
}

/** The body, or undefined once it exceeds `max` bytes (reading stops there). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  if (Number(req.headers["content-length"] ?? 0) > max) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners("data");
        req.pause();
        resolve(undefined);
      } else chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** The body as a `schema` message, or undefined after answering 400 with why not. */
function decode<D extends DescMessage>(res: ServerResponse, schema: D, body: Buffer): MessageShape<D> | undefined {
  let json: JsonValue;
  try {
    json = JSON.parse(body.toString("utf8") || "{}") as JsonValue;
  } catch (err) {
    reply(res, 400, { error: "invalid_json", message: `body is not valid JSON: ${(err as Error).message}` });
    return undefined;
  }
  try {
    return fromJson(schema, json);
  } catch (err) {
    reply(res, 400, { error: "bad_request", message: `body is not a ${schema.name}: ${(err as Error).message}` });
    return undefined;
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}

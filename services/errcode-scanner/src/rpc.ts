import { randomUUID } from "node:crypto";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  CodeLocationSchema,
  ConstructorSchema,
  DynamicSiteSchema,
  ErrcodeScanService,
  ErrorCodeSchema,
  FindConstructorsResponseSchema,
  GetScanResponseSchema,
  ListErrorCodesResponseSchema,
  ListScansResponseSchema,
  ProblemSchema,
  QueryRegistryResponseSchema,
  RegistryEntrySchema,
  ScanSchema,
  SubmitScanResponseSchema,
  ViolationSchema,
} from "@opsplane/contracts";
import { type Auditor, actorOf, badRequest, notFound, principalKey, requestIdKey, rpcService } from "@opsplane/platform";
import { ArtifactSourceError, allowedUrl, checkSha256, saveUpload } from "./artifact-source.js";
import type { ScanRunner } from "./runner.js";
import type { DynamicSite, ErrorCodeEntry } from "./scan/engine.js";
import type { Location } from "./scan/extract.js";
import { textPattern } from "./scan/rules.js";
import type { Violation } from "./scan/validate.js";
import { artifactNameProblem, basesProblem, className } from "./scan-request.js";
import type { ScanRow, ScanStore } from "./store.js";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function scanId(id: string): string {
  if (!uuid.test(id)) throw badRequest("id must be a scan id (UUID)");
  return id;
}

function checkBases(bases: string[]): string[] {
  const problem = basesProblem(bases);
  if (problem) throw badRequest(problem);
  return bases;
}

function checkArtifactName(name: string): string {
  const problem = artifactNameProblem(name);
  if (problem) throw badRequest(problem);
  return name;
}

export function toScan(s: ScanRow) {
  const st = s.stats;
  return create(ScanSchema, {
    id: s.id,
    status: s.status,
    artifactName: s.artifact_name,
    sha256: s.sha256 ?? "",
    source: s.source,
    bases: s.bases,
    containers: st?.containers ?? 0,
    classes: st?.classes ?? 0,
    methods: st?.methods ?? 0,
    exceptionClasses: st?.exceptionClasses ?? 0,
    errorCodes: st?.errorCodes ?? 0,
    dynamicSites: st?.dynamicSites ?? 0,
    malformedClasses: st?.malformedClasses ?? 0,
    violations: st?.violations ?? 0,
    violationsByRule: st?.violationsByRule ?? {},
    alreadyCompliant: st?.alreadyCompliant ?? 0,
    registryAdditions: 0,
    durationMs: BigInt(st?.durationMs ?? 0),
    error: s.error ?? "",
    notChecked: s.not_checked,
    basesNotFound: s.bases_not_found,
    createdAt: s.created_at.toISOString(),
    finishedAt: s.finished_at?.toISOString() ?? "",
  });
}

const toLocation = (l: Location) =>
  create(CodeLocationSchema, { artifact: l.artifact, className: l.class, method: l.method, line: l.line ?? 0 });
const toErrorCode = (e: ErrorCodeEntry) =>
  create(ErrorCodeSchema, {
    code: e.code,
    message: e.message ?? "",
    messageKind: e.messageKind,
    exceptionClass: e.exceptionClass,
    family: e.family,
    locations: e.locations.map(toLocation),
  });
const toDynamicSite = (d: DynamicSite) =>
  create(DynamicSiteSchema, {
    exceptionClass: d.exceptionClass,
    reason: d.reason,
    message: d.message ?? "",
    location: toLocation(d.location),
  });
const toViolation = (v: Violation) =>
  create(ViolationSchema, {
    code: v.code,
    rule: v.rule,
    message: v.message,
    exceptionClass: v.exceptionClass,
    locations: v.locations.map(toLocation),
  });

export interface RpcDeps {
  store: ScanStore;
  runner: ScanRunner;
  urlPrefixes: string[];
  maxArtifactBytes: number;
  audit: Auditor;
}

/** Connect API: submitting scans needs the operator role, reading needs viewer. */
export function errcodeRpc(d: RpcDeps) {
  return rpcService({
    service: ErrcodeScanService,
    access: { role: "viewer" },
    methods: { submitScan: { role: "operator" } },
    impl: {
      async submitScan(req, ctx) {
        const bases = checkBases(req.settings?.bases ?? []);
        const codePattern = req.settings?.codePattern ?? "";
        if (codePattern) {
          try {
            textPattern(codePattern, "settings.code_pattern");
          } catch (err) {
            throw badRequest((err as Error).message);
          }
        }
        let sha256: string | undefined;
        try {
          sha256 = checkSha256(req.sha256);
        } catch (err) {
          throw badRequest((err as Error).message);
        }
        const hasContent = req.content.length > 0;
        if (hasContent === Boolean(req.url)) throw badRequest("give either content or url");
        const id = randomUUID();
        const principal = ctx.values.get(principalKey);
        const createdBy = actorOf(principal);
        if (req.url) {
          const url = allowedUrl(req.url, d.urlPrefixes);
          if (!url) throw badRequest(`url must be under an allowed artifact repository (${d.urlPrefixes.join(", ") || "none configured"})`);
          const name = checkArtifactName(req.artifactName || path.posix.basename(url.pathname));
          await d.store.insert({ id, source: "url", artifactName: name, url: url.href, sha256, bases, codePattern, createdBy });
          d.runner.enqueue({ scanId: id, source: "url", artifactName: name, url: url.href, sha256, bases, codePattern });
        } else {
          checkArtifactName(req.artifactName);
          if (req.content.length > d.maxArtifactBytes) throw badRequest(`content exceeds ${d.maxArtifactBytes} bytes`);
          const file = path.join(await d.runner.uploadDir(id), req.artifactName);
          let actual: string;
          try {
            actual = await saveUpload(req.content, file, sha256);
          } catch (err) {
            if (err instanceof ArtifactSourceError) throw badRequest(err.message);
            throw err;
          }
          await d.store.insert({ id, source: "upload", artifactName: req.artifactName, sha256: actual, bases, codePattern, createdBy });
          d.runner.enqueue({ scanId: id, source: "upload", artifactName: req.artifactName, file, sha256: actual, bases, codePattern });
        }
        const row = (await d.store.get(id)) as ScanRow;
        await d.audit.record(d.store.pool, {
          principal,
          action: "scan.submitted",
          target: `scan:${id}`,
          after: { artifact: row.artifact_name, source: row.source, url: row.artifact_url, sha256: row.sha256, bases: row.bases },
          requestId: ctx.values.get(requestIdKey),
        });
        return create(SubmitScanResponseSchema, { scan: toScan(row) });
      },

      async getScan(req) {
        const row = await d.store.get(scanId(req.id));
        if (!row) throw notFound(`no scan ${req.id}`);
        const finished = row.status === "succeeded";
        return create(GetScanResponseSchema, {
          scan: toScan(row),
          errorCodes: finished ? (await d.store.errorCodes(row.id)).map(toErrorCode) : [],
          violations: finished ? (await d.store.violations(row.id)).map(toViolation) : [],
          problems: row.problems.map((p) => create(ProblemSchema, p)),
          dynamicSites: row.dynamic_sites.map(toDynamicSite),
        });
      },

      async listScans(req) {
        const limit = req.limit <= 0 ? 50 : Math.min(req.limit, 500);
        return create(ListScansResponseSchema, { scans: (await d.store.list(limit)).map(toScan) });
      },

      async listErrorCodes(req) {
        const rows = await d.store.errorCodes(scanId(req.scanId), req.code, req.exceptionClass);
        return create(ListErrorCodesResponseSchema, { errorCodes: rows.map(toErrorCode) });
      },

      async findConstructors(req) {
        if (!className.test(req.className)) throw badRequest("class_name must be a fully-qualified class name");
        const rows = await d.store.constructors(scanId(req.scanId), req.className);
        return create(FindConstructorsResponseSchema, {
          constructors: rows.map((r) =>
            create(ConstructorSchema, {
              className: r.class_name,
              method: r.method,
              container: r.container,
              descriptor: r.descriptor,
              line: r.line ?? 0,
            }),
          ),
        });
      },

      async queryRegistry(req) {
        const limit = req.limit <= 0 ? 1000 : Math.min(req.limit, 100_000);
        const rows = await d.store.registry(req.code, limit);
        return create(QueryRegistryResponseSchema, {
          entries: rows.map((r) =>
            create(RegistryEntrySchema, {
              code: r.code,
              message: r.message ?? "",
              exceptionFamily: r.exceptionFamily,
              firstScanId: r.firstScanId ?? "",
              addedAt: r.addedAt.toISOString(),
            }),
          ),
        });
      },
    },
  });
}

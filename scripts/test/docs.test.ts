import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { checkArchitectureNames, checkDocs, checkLinks, checkRolloutStatus } from "../check-docs.js";

const repo = path.resolve(__dirname, "..", "..");

test("the docs are true where a machine can tell (links, kubectl commands, services tables)", () => {
  assert.deepEqual(checkDocs(repo), []);
});

// The checker itself, on a small tree of docs with one of each mistake.
const fixture = mkdtempSync(path.join(tmpdir(), "opsplane-docs-"));
after(() => rmSync(fixture, { recursive: true, force: true }));
const write = (file: string, text: string) => {
  mkdirSync(path.dirname(path.join(fixture, file)), { recursive: true });
  writeFileSync(path.join(fixture, file), text);
};

test("links outside the repository, to nothing, or to a missing heading are found", () => {
  write("docs/guide.md", "# Guide\n\n## Set up\n");
  write(
    "services/a/README.md",
    [
      "See [the guide](../../docs/guide.md#set-up), [the kit](https://example.com/kit) and [below](#api).",
      "The design is in [`../../../shared/ARCHITECTURE.md`](../../../shared/ARCHITECTURE.md).",
      "Also `../../../shared/ARCHITECTURE.md`, [gone](../../docs/gone.md) and [a heading](../../docs/guide.md#tear-down).",
      "```sh",
      "cd ../../../elsewhere   # commands in code blocks are not links",
      "```",
      "## API",
    ].join("\n"),
  );
  assert.deepEqual(checkLinks(fixture, ["docs/guide.md", "services/a/README.md"]), [
    "services/a/README.md:2: link ../../../shared/ARCHITECTURE.md points outside the repository",
    "services/a/README.md:3: link ../../docs/gone.md leads nowhere",
    "services/a/README.md:3: link ../../docs/guide.md#tear-down: no heading #tear-down there",
    "services/a/README.md:3: path ../../../shared/ARCHITECTURE.md points outside the repository",
  ]);
});

test("kubectl rollout status with more than one resource is found; one per call, a selector or a template passes", () => {
  write(
    "k8s/README.md",
    [
      "Run `kubectl rollout status` per resource:",
      "```sh",
      "kubectl -n deps rollout status statefulset/postgres statefulset/kafka deployment/redis",
      'for r in statefulset/postgres deployment/redis; do kubectl -n deps rollout status "$r"; done',
      "kubectl rollout status deployment/app --timeout 5m && echo done",
      "kubectl -n deps rollout status -l app=x --watch",
      "```",
    ].join("\n"),
  );
  write("charts/x/templates/NOTES.txt", "  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ $fullname }}\n");
  assert.deepEqual(checkRolloutStatus(fixture, ["k8s/README.md", "charts/x/templates/NOTES.txt"]), [
    "k8s/README.md:3: kubectl rollout status takes one resource per call, this names 3: statefulset/postgres statefulset/kafka deployment/redis",
  ]);
});

test("an RPC service or topic the architecture page leaves out, or a service it names that does not exist, is found", () => {
  write(
    "proto/ops/v1/a.proto",
    'syntax = "proto3";\nservice AService {\n  rpc Get(GetRequest) returns (GetResponse);\n}\nservice BService {}\n',
  );
  write("libs/contracts/src/topics.ts", 'export const topics = { a: topic("a.happened", A), b: topic("b.happened", B) };\n');
  write("docs/architecture.md", "Services: `AService`, `OldService`. Topics: `a.happened`.\n");
  assert.deepEqual(checkArchitectureNames(fixture), [
    "docs/architecture.md does not name `BService`",
    "docs/architecture.md does not name `b.happened`",
    "docs/architecture.md names `OldService`, which proto/ does not define",
  ]);
});

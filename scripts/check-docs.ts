// Checks that the docs say true things a machine can verify: links stay inside the repository and
// resolve (files and #anchors), no inline path points outside it, every `kubectl rollout status`
// names one resource (kubectl refuses more), the services tables and READMEs agree with the code
// about which services are health endpoints only, and docs/architecture.md names every RPC service
// and topic there is. Run: `npx tsx scripts/check-docs.ts [repo]`; prints
// one line per problem and exits 1 when there is any. scripts/test/docs.test.ts runs it.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { services } from "./services.js";

/** Files git would commit: tracked, plus new ones not ignored. */
function repoFiles(repo: string): string[] {
  return execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: repo, encoding: "utf8" })
    .split("\0")
    .filter((f) => f && existsSync(path.join(repo, f)));
}

/** The lines outside fenced code blocks (`inside` false) or in them (true), line numbers kept: the others become empty. */
function lines(text: string, inside = false): string[] {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced === inside ? line : "";
  });
}
const prose = (text: string) => lines(text);
const code = (text: string) => lines(text, true);

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, "")
    .replace(/[^\p{L}\p{N} -]/gu, "")
    .replace(/ /g, "-");

function anchorsOf(file: string): Set<string> {
  return new Set(
    prose(readFileSync(file, "utf8"))
      .map((l) => /^#{1,6}\s+(.*)$/.exec(l)?.[1])
      .filter((h): h is string => h !== undefined)
      .map(slug),
  );
}

export function checkLinks(repo: string, files: string[]): string[] {
  const problems: string[] = [];
  const inside = (p: string) => p === repo || p.startsWith(repo + path.sep);
  // Each linked file's headings, read once however many links lead there.
  const anchorsByFile = new Map<string, Set<string>>();
  const anchorsIn = (file: string) => anchorsByFile.get(file) ?? anchorsByFile.set(file, anchorsOf(file)).get(file)!;
  for (const file of files.filter((f) => f.endsWith(".md"))) {
    const dir = path.dirname(path.join(repo, file));
    prose(readFileSync(path.join(repo, file), "utf8")).forEach((line, i) => {
      const where = `${file}:${i + 1}`;
      const targets = [...line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g), ...line.matchAll(/^\s*\[[^\]]+\]:\s+(\S+)/g)].map((m) => m[1]!);
      for (const target of targets) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        const [pathPart, anchor] = target.split("#", 2) as [string, string | undefined];
        const resolved = pathPart ? path.resolve(dir, decodeURI(pathPart)) : path.join(repo, file);
        if (!inside(resolved)) problems.push(`${where}: link ${target} points outside the repository`);
        else if (!existsSync(resolved)) problems.push(`${where}: link ${target} leads nowhere`);
        else if (anchor && resolved.endsWith(".md") && !anchorsIn(resolved).has(anchor))
          problems.push(`${where}: link ${target}: no heading #${anchor} there`);
      }
      // A relative path in inline code is a reference too (`../shared/…` read as "go there").
      for (const m of line.matchAll(/`(\.\.\/[^`\s]*)`(?!\])/g))
        if (!inside(path.resolve(dir, m[1]!))) problems.push(`${where}: path ${m[1]} points outside the repository`);
    });
  }
  return problems;
}

/** Options of `kubectl rollout status` (and kubectl's global ones) that take a separate value. */
const optionsWithValue = new Set([
  "-n",
  "--namespace",
  "--timeout",
  "--revision",
  "-l",
  "--selector",
  "-f",
  "--filename",
  "-k",
  "--kustomize",
  "--context",
  "--kubeconfig",
]);
const selectsByOption = /(^|\s)(-l|--selector|-f|--filename|-k|--kustomize)(\s|=)/;

export function checkRolloutStatus(repo: string, files: string[]): string[] {
  const problems: string[] = [];
  // Commands: code blocks of the Markdown docs, and every line of the charts' install notes.
  const commands = (file: string, text: string) => (file.endsWith(".md") ? code(text) : text.split("\n"));
  for (const file of files.filter((f) => f.endsWith(".md") || f.endsWith("NOTES.txt") || f.endsWith(".tpl")))
    commands(file, readFileSync(path.join(repo, file), "utf8")).forEach((line, i) => {
      // A template expression ({{ $fullname }}) stands for one word.
      const call = /\bkubectl\b.*?\brollout\s+status\b(.*)/.exec(line.replace(/\{\{[^}]*\}\}/g, "X"));
      if (!call) return;
      const args = call[1]!
        .split(/;|&&|\|\||\||#/)[0]!
        .trim()
        .split(/\s+/)
        .filter(Boolean);
      const resources: string[] = [];
      for (let k = 0; k < args.length; k++) {
        if (optionsWithValue.has(args[k]!)) k++;
        else if (!args[k]!.startsWith("-")) resources.push(args[k]!);
      }
      const wanted = selectsByOption.test(call[1]!) ? 0 : 1;
      if (resources.length !== wanted)
        problems.push(
          `${file}:${i + 1}: kubectl rollout status takes one resource per call, this names ${resources.length}: ${resources.join(" ")}`,
        );
    });
  return problems;
}

/** A service whose definition sets nothing up (`setup: () => ({})`) serves the kit's endpoints only. */
const healthOnly = (repo: string, name: string) =>
  /setup:\s*\(\)\s*=>\s*\(\{\}\)/.test(readFileSync(path.join(repo, "services", name, "src", "service.ts"), "utf8"));

/** The services tables of the root README and docs/architecture.md: every service, its port, and "health endpoints only" exactly when true. */
export function checkServiceTables(repo: string): string[] {
  const problems: string[] = [];
  for (const doc of ["README.md", "docs/architecture.md"]) {
    if (!existsSync(path.join(repo, doc))) {
      problems.push(`${doc} is missing`);
      continue;
    }
    const rows = new Map<string, string>();
    for (const line of readFileSync(path.join(repo, doc), "utf8").split("\n")) {
      const cells = line.split("|").map((c) => c.trim());
      if (cells.length > 3 && services.some((s) => s.name === cells[1])) rows.set(cells[1]!, line);
    }
    for (const s of services) {
      const row = rows.get(s.name);
      if (!row) {
        problems.push(`${doc}: the services table lacks ${s.name}`);
        continue;
      }
      if (!row.includes(`| ${s.port} `)) problems.push(`${doc}: ${s.name} is not shown on port ${s.port}`);
      const says = /health endpoints only/i.test(row);
      const is = healthOnly(repo, s.name);
      if (says !== is)
        problems.push(
          `${doc}: ${s.name} ${is ? "serves health endpoints only, and its row must say so" : "is built, but its row says health endpoints only"}`,
        );
    }
  }
  return problems;
}

/** Each service README says "health endpoints only" exactly when its code serves nothing else. */
export function checkServiceReadmes(repo: string): string[] {
  return services.flatMap(({ name }) => {
    const says = /health endpoints only/i.test(readFileSync(path.join(repo, "services", name, "README.md"), "utf8"));
    const is = healthOnly(repo, name);
    if (says === is) return [];
    return [
      `services/${name}/README.md: ${is ? "must say the service serves health endpoints only" : "says health endpoints only, but the service is built"}`,
    ];
  });
}

/** The architecture page names every RPC service of proto/ (and no other) and every topic of the contracts. */
export function checkArchitectureNames(repo: string): string[] {
  const page = path.join(repo, "docs/architecture.md");
  if (!existsSync(page)) return [];
  const named = new Set([...readFileSync(page, "utf8").matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!));
  const protoDir = path.join(repo, "proto/ops/v1");
  const rpcServices = readdirSync(protoDir)
    .filter((f) => f.endsWith(".proto"))
    .flatMap((f) => [...readFileSync(path.join(protoDir, f), "utf8").matchAll(/^service (\w+)/gm)].map((m) => m[1]!));
  const topicNames = [...readFileSync(path.join(repo, "libs/contracts/src/topics.ts"), "utf8").matchAll(/topic\("([^"]+)"/g)].map(
    (m) => m[1]!,
  );
  const known = new Set([...rpcServices, ...topicNames]);
  return [
    ...[...known].filter((n) => !named.has(n)).map((n) => `docs/architecture.md does not name \`${n}\``),
    ...[...named]
      .filter((n) => /^[A-Z]\w*Service$/.test(n) && !known.has(n))
      .map((n) => `docs/architecture.md names \`${n}\`, which proto/ does not define`),
  ];
}

export function checkDocs(repo: string): string[] {
  const files = repoFiles(repo);
  return [
    ...checkLinks(repo, files),
    ...checkRolloutStatus(repo, files),
    ...checkServiceTables(repo),
    ...checkServiceReadmes(repo),
    ...checkArchitectureNames(repo),
  ];
}

if (require.main === module) {
  const problems = checkDocs(path.resolve(process.argv[2] ?? "."));
  for (const p of problems) console.log(p);
  process.exit(problems.length ? 1 : 0);
}

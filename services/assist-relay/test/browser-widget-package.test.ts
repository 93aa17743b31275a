import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { chromiumArgs, chromiumPath } from "@opsplane/testing";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { startRelays } from "./harness.js";

const run = promisify(execFile);
const repo = path.resolve(__dirname, "../../..");
const widgetLib = path.join(repo, "libs/assist-widget");
const tsc = path.join(repo, "node_modules/typescript/bin/tsc");

/** What a bank's app writes: the widget mounted with the page's own sanitiser hooks. */
const consumer = `import { type ConsoleEntry, type NetworkEntry, startAssistWidget } from "@opsplane/assist-widget";

const dropInternal = (entry: ConsoleEntry): ConsoleEntry | null => (entry.text.includes("internal") ? null : entry);
const hideAmounts = (entry: NetworkEntry): NetworkEntry => ({ ...entry, url: entry.url.replace(/amount=\\d+/, "amount=***") });
startAssistWidget({ relay: document.documentElement.dataset["relay"] ?? "", sanitiseConsole: dropInternal, sanitiseNetwork: hideAmounts });
`;
/** Mistakes the package's types must catch (an unused @ts-expect-error fails the check, so \`any\` types would too). */
const mistakes = `import { startAssistWidget, type WidgetOptions } from "@opsplane/assist-widget";

// @ts-expect-error the relay's address is required
startAssistWidget({ unmaskedInputSelector: ".public" });
// @ts-expect-error a hook returns the entry or null, not its text
export const wrong: WidgetOptions["sanitiseConsole"] = (entry) => entry.text;
`;
const tsconfig = (module: string, moduleResolution: string) =>
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: "es2022",
      lib: ["ES2022", "DOM"],
      types: [],
      skipLibCheck: false,
      module,
      moduleResolution,
    },
    include: ["*.ts"],
  });

describe("@opsplane/assist-widget: packed, installed offline into an empty app, type-checked, imported and run", () => {
  let dir: string;
  let app: string;
  let packed: string[];

  before(async () => {
    assert.ok(
      existsSync(path.join(widgetLib, "dist/bundle/widget.mjs")) && existsSync(path.join(widgetLib, "dist/index.d.ts")),
      'the widget is not built: run "npx tsc -b && npm run build -w services/assist-relay"',
    );
    dir = await mkdtemp(path.join(tmpdir(), "assist-widget-"));
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: widgetLib });
    const [tarball] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    packed = tarball!.files.map((f) => f.path).sort();
    app = path.join(dir, "app");
    await mkdir(app);
    await writeFile(path.join(app, "package.json"), JSON.stringify({ name: "bank-app", private: true, type: "module" }));
    // --offline: the package needs nothing but itself, so no registry is asked.
    await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", path.join(dir, tarball!.filename)], {
      cwd: app,
    });
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the tarball holds the bundles, the sanitiser and their types, and installs with no other package", async () => {
    for (const file of [
      "dist/bundle/widget.js",
      "dist/bundle/widget.mjs",
      "dist/index.d.ts",
      "dist/sanitiser.js",
      "package.json",
      "README.md",
    ]) {
      assert.ok(packed.includes(file), `${file} is in the tarball`);
    }
    const unexpected = packed.filter((f) => f.startsWith("src/") || f.startsWith("test/") || /^dist\/(?!sanitiser\.js$)[^/]+\.js$/.test(f));
    assert.deepEqual(unexpected, [], "no sources, tests or unbundled modules");
    const manifest = JSON.parse(await readFile(path.join(app, "node_modules/@opsplane/assist-widget/package.json"), "utf8"));
    assert.equal(manifest.private, undefined);
    assert.equal(manifest.dependencies, undefined, "no runtime dependencies");
    assert.deepEqual(
      (await readdir(path.join(app, "node_modules"))).filter((f) => !f.startsWith(".")),
      ["@opsplane"],
    );
  });

  test("an app's TypeScript checks against its types (bundler and Node resolution), and they catch mistakes", async () => {
    await writeFile(path.join(app, "main.ts"), consumer);
    await writeFile(path.join(app, "mistakes.ts"), mistakes);
    await writeFile(path.join(app, "tsconfig.json"), tsconfig("esnext", "bundler"));
    await writeFile(path.join(app, "tsconfig.node.json"), tsconfig("nodenext", "nodenext"));
    for (const project of ["tsconfig.json", "tsconfig.node.json"]) {
      const result = await run(process.execPath, [tsc, "-p", project], { cwd: app }).catch((e: { stdout: string }) => e);
      assert.equal(result.stdout, "", `${project}: ${result.stdout}`);
    }
  });

  test("Node imports the widget and the sanitiser from the installed package", async () => {
    const script = `const { startAssistWidget } = await import("@opsplane/assist-widget");
const { createSanitiser } = await import("@opsplane/assist-widget/sanitiser");
const sanitiser = createSanitiser({ maskedKeys: "token", networkBodyUrls: [], networkBodyMaxBytes: 4096 });
console.log(typeof startAssistWidget, sanitiser.text("card 4111 1111 1111 1111, /pay?token=abc"));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: app });
    assert.equal(stdout.trim(), "function card **** **** **** 1111, /pay?token=***");
  });

  describe("in Chromium", { skip: existsSync(chromiumPath) ? false : `${chromiumPath} not found` }, () => {
    let env: Awaited<ReturnType<typeof startRelays>>;
    let site: Server;
    let relay: string;
    let bundle: string;

    before(async () => {
      // The app's bundler resolves the package as a bank's build would: from the app's node_modules, by its exports.
      const out = await build({ entryPoints: [path.join(app, "main.ts")], absWorkingDir: app, bundle: true, format: "esm", write: false });
      bundle = out.outputFiles[0]!.text;
      site = createServer((req, res) => {
        if (req.url === "/app.js") return res.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
        res
          .writeHead(200, { "content-type": "text/html" })
          .end(
            `<!doctype html><html data-relay="${relay}"><body><h1>Loans</h1><script type="module" src="/app.js"></script></body></html>`,
          );
      });
      await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
      const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
      env = await startRelays(1, { redis: false, origins: [siteUrl] });
      relay = env.relays[0]!.url;
    });
    after(async () => {
      await env?.close();
      site?.close();
    });

    test("bundled into an app's page it opens a session with the relay and shows the key", async () => {
      const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
      try {
        const page = await browser.newPage();
        await page.goto(`http://127.0.0.1:${(site.address() as AddressInfo).port}/`);
        await page.click("#opsplane-assist [data-toggle]");
        await page.click("text=Request remote assistance");
        await page.waitForFunction(() =>
          /^\w{4}-\w{4}-\w{4}$/.test(document.querySelector("#opsplane-assist [data-key]")?.textContent ?? ""),
        );
      } finally {
        await browser.close();
      }
    });

    test("the relay serves the package's own <script> build: one widget", async () => {
      const served = Buffer.from(await (await fetch(`${relay}/assist/widget.js`)).arrayBuffer());
      const installed = await readFile(path.join(app, "node_modules/@opsplane/assist-widget/dist/bundle/widget.js"));
      assert.ok(served.equals(installed), "the relay's widget.js is the installed package's dist/bundle/widget.js");
    });
  });
});

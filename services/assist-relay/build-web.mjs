// Bundles the developer console (type-checked first by `tsc -p web` in the build script, with the DOM lib) and puts
// beside it the widget script the relay serves: `@opsplane/assist-widget`'s own <script> build (built just before by
// the build script), the same file apps get from the package, so there is one widget.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "dist", "web");
const require = createRequire(import.meta.url);
mkdirSync(out, { recursive: true });

const widget = require.resolve("@opsplane/assist-widget/widget.js");
copyFileSync(widget, path.join(out, "widget.js"));
copyFileSync(`${widget}.map`, path.join(out, "widget.js.map"));
await build({
  entryPoints: [path.join(here, "web/console/index.ts")],
  outfile: path.join(out, "console.js"),
  format: "iife",
  bundle: true,
  minify: true,
  sourcemap: true,
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
});
const rrwebStyle = readFileSync(path.join(path.dirname(require.resolve("rrweb")), "style.css"), "utf8");
const page = readFileSync(path.join(here, "web/console/console.html"), "utf8").replace("/*RRWEB_STYLE*/", rrwebStyle);
writeFileSync(path.join(out, "console.html"), page);

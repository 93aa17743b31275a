// Bundles the browser code (type-checked first by `tsc -p web` in the build script, with the DOM lib): the widget (IIFE for the <script> tag, ESM for npm import) and the developer console.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "dist", "web");
const require = createRequire(import.meta.url);
mkdirSync(out, { recursive: true });

const common = { bundle: true, minify: true, sourcemap: true, target: "es2020", legalComments: "none", logLevel: "warning" };
await Promise.all([
  build({ ...common, entryPoints: [path.join(here, "web/widget/auto.ts")], format: "iife", outfile: path.join(out, "widget.js") }),
  build({ ...common, entryPoints: [path.join(here, "web/widget/index.ts")], format: "esm", outfile: path.join(out, "widget.mjs") }),
  build({ ...common, entryPoints: [path.join(here, "web/console/index.ts")], format: "iife", outfile: path.join(out, "console.js") }),
]);
const rrwebStyle = readFileSync(path.join(path.dirname(require.resolve("rrweb")), "style.css"), "utf8");
const page = readFileSync(path.join(here, "web/console/console.html"), "utf8").replace("/*RRWEB_STYLE*/", rrwebStyle);
writeFileSync(path.join(out, "console.html"), page);

// Bundles the widget into dist/bundle/ (`tsc -b` first type-checks it and emits its .d.ts and the relay's
// sanitiser.js): `widget.js` (IIFE) for the <script> tag the relay serves, `widget.mjs` (ESM) for apps that
// import the package. Everything it needs is inside, so the package has no runtime dependencies.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const common = { bundle: true, minify: true, sourcemap: true, target: "es2020", legalComments: "none", logLevel: "warning" };
await Promise.all([
  build({ ...common, entryPoints: [path.join(here, "src/auto.ts")], format: "iife", outfile: path.join(here, "dist/bundle/widget.js") }),
  build({ ...common, entryPoints: [path.join(here, "src/index.ts")], format: "esm", outfile: path.join(here, "dist/bundle/widget.mjs") }),
]);

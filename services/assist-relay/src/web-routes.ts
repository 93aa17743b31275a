import { readFileSync } from "node:fs";
import path from "node:path";
import type { App } from "@opsplane/platform";

/** Where `npm run build` (build-web.mjs) puts the bundled widget and developer console. */
export const webDir = path.join(__dirname, "..", "dist", "web");

/** Serves the widget script and the developer console page; both are read once, at start-up. */
export function installWebRoutes(app: App): void {
  const read = (file: string) => {
    try {
      return readFileSync(path.join(webDir, file));
    } catch {
      throw new Error(`${path.join(webDir, file)} is missing: run "npm run build -w services/assist-relay"`);
    }
  };
  const widget = read("widget.js");
  const consoleJs = read("console.js");
  const consoleHtml = read("console.html");
  const scriptHeaders = { "cache-control": "no-cache", "cross-origin-resource-policy": "cross-origin" };
  app.get("/assist/widget.js", { config: { access: "public" } }, async (_req, reply) =>
    reply.type("text/javascript; charset=utf-8").headers(scriptHeaders).send(widget),
  );
  app.get("/console/console.js", { config: { access: "public" } }, async (_req, reply) =>
    reply.type("text/javascript; charset=utf-8").headers(scriptHeaders).send(consoleJs),
  );
  app.get("/console", { config: { access: "public" } }, async (_req, reply) =>
    reply.type("text/html; charset=utf-8").header("cache-control", "no-cache").send(consoleHtml),
  );
}

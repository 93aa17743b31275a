#!/usr/bin/env node
// The bin is this committed file, not dist/proxy-cli.js: `npm ci` links bins before anything is built, and
// skips one whose file is missing, leaving `npx callback-agent-proxy` to look for the name on the public registry.
const { existsSync } = require("node:fs");
const path = require("node:path");

const cli = path.join(__dirname, "..", "dist", "proxy-cli.js");
if (!existsSync(cli)) {
  process.stderr.write("callback-agent-proxy: not built yet; from the repository root run: npx tsc -b libs/callback-agent\n");
  process.exit(1);
}
require(cli);

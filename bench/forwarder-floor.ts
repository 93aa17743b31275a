// The floor under the dispatcher on the machine at hand: a node:http server and the dispatcher's own
// forwarder (bounded body read, undici pool, end-to-end headers, the exact bytes forwarded, the answer
// written back), with no rule match, no id extraction, no registry lookup, no recorded decision and no
// metrics. bench/dispatch.ts runs it as the "nodeForwarder" target: what the dispatcher costs above it
// is what routing and recording add; what it costs itself is what any Node forwarder pays here.
//   PORT=… UPSTREAM_URL=http://127.0.0.1:… node --import tsx bench/forwarder-floor.ts
import http from "node:http";
import { z } from "zod";
import { dispatcherEnv } from "../services/callback-dispatcher/src/config.js";
import { createForwarder, outboundHeaders } from "../services/callback-dispatcher/src/forwarder.js";
import { headThenRest, readBounded } from "../services/callback-dispatcher/src/read-bounded.js";

const port = Number(process.env.PORT);
const upstream = process.env.UPSTREAM_URL;
if (!port || !upstream) throw new Error("PORT and UPSTREAM_URL are required");

// The dispatcher's own defaults, so the floor forwards exactly as it does.
const defaults = z.object(dispatcherEnv).parse({});
const forwarder = createForwarder({ timeoutMs: defaults.UPSTREAM_TIMEOUT_MS, connections: defaults.UPSTREAM_CONNECTIONS });
const production = { name: "production", baseUrl: upstream, production: true, description: "", idPatterns: {} };
let served = 0;

http
  .createServer((req, res) => {
    const requestId = String(++served);
    readBounded(req, defaults.CALLBACK_EXTRACT_LIMIT_BYTES)
      .then(({ head, complete }) =>
        forwarder.forward(
          production,
          {
            method: req.method ?? "GET",
            pathAndQuery: req.url ?? "/",
            headers: outboundHeaders(req, requestId),
            body: complete ? head : headThenRest(head, req),
          },
          res,
          requestId,
        ),
      )
      .catch((err: Error) => {
        if (res.headersSent) res.destroy(err);
        else res.writeHead(502).end(err.message);
      });
  })
  .listen(port, "127.0.0.1");

// Exit rather than die on the bench's SIGTERM, so a `--cpu-prof` run (BENCH_PROF) writes its profile.
process.on("SIGTERM", () => process.exit(0));

// The floor under the dispatcher on the machine at hand: a node:http server and the dispatcher's own
// forwarder (bounded body read, undici pool, end-to-end headers, the exact bytes forwarded, the answer
// written back), with no rule match, no id extraction, no registry lookup, no recorded decision and no
// metrics. bench/dispatch.ts runs it as the "nodeForwarder" target: what the dispatcher costs above it
// is what routing and recording add; what it costs itself is what any Node forwarder pays here.
//   PORT=… UPSTREAM_URL=http://127.0.0.1:… node --import tsx bench/forwarder-floor.ts
import http from "node:http";
import { createForwarder, outboundHeaders } from "../services/callback-dispatcher/src/forwarder.js";
import { readBounded } from "../services/callback-dispatcher/src/read-bounded.js";

const port = Number(process.env.PORT);
const upstream = process.env.UPSTREAM_URL;
if (!port || !upstream) throw new Error("PORT and UPSTREAM_URL are required");

const forwarder = createForwarder({ timeoutMs: 10_000, connections: 64 });
const production = { name: "production", baseUrl: upstream, production: true, description: "" };
let served = 0;

http
  .createServer((req, res) => {
    const requestId = String(++served);
    readBounded(req, 1024 * 1024)
      .then(({ head }) =>
        forwarder.forward(
          production,
          { method: req.method ?? "GET", pathAndQuery: req.url ?? "/", headers: outboundHeaders(req, requestId), body: head },
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

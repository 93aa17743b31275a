import http from "node:http";
import type { AddressInfo } from "node:net";
import { endToEndHeaders } from "./hop-by-hop.js";

export interface ProxyOptions {
  /** Port to listen on (0 for any). */
  port: number;
  host?: string;
  /** The app behind the sidecar, e.g. http://127.0.0.1:8080. */
  upstream: string;
}

export interface RunningProxy {
  url: string;
  close(): Promise<void>;
}

/**
 * A plain reverse proxy for apps that are not Node: requests stream through
 * unchanged (bodies, status, headers), and because it is itself a Node http
 * server, the agent started in the same process observes it like any app.
 */
export async function startProxy(o: ProxyOptions): Promise<RunningProxy> {
  const upstream = new URL(o.upstream);
  const keepAlive = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const headers = endToEndHeaders(req.headers);
    headers["x-forwarded-for"] = [req.headers["x-forwarded-for"], req.socket.remoteAddress].filter(Boolean).join(", ");
    const out = http.request(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: `${upstream.pathname.replace(/\/$/, "")}${req.url ?? "/"}`,
        headers,
        agent: keepAlive,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, endToEndHeaders(upRes.headers));
        upRes.pipe(res);
      },
    );
    out.on("error", (err) => {
      if (res.headersSent) return void res.destroy(err);
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "bad_gateway", message: `upstream ${o.upstream} did not answer: ${err.message}` }));
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "0.0.0.0", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        keepAlive.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

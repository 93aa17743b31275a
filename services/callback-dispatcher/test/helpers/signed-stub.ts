import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedCallback {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Whether the x-signature header is the HMAC-SHA256 of the exact body bytes. */
  verified: boolean;
}

export const sign = (secret: string, body: Buffer | string) => createHmac("sha256", secret).update(body).digest("hex");

/**
 * An environment's callback receiver, standing in for the business app: it
 * verifies the platform's HMAC over the exact body bytes, as payment SDKs do,
 * records what it got and answers in the callback's own format.
 */
export async function startSignedStub(name: string, secret: string, opts: { hang?: boolean } = {}) {
  const received: ReceivedCallback[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (opts.hang) return;
      const body = Buffer.concat(chunks);
      const given = Buffer.from(String(req.headers["x-signature"] ?? ""), "hex");
      const expected = Buffer.from(sign(secret, body), "hex");
      const verified = given.length === expected.length && timingSafeEqual(given, expected);
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body, verified });
      if (!verified) {
        res.writeHead(401, { "content-type": "text/plain" });
        return res.end("bad signature");
      }
      if (String(req.headers["content-type"]).includes("xml")) {
        res.writeHead(200, { "content-type": "application/xml", "x-served-by": name });
        return res.end(`<xml><return_code><![CDATA[SUCCESS]]></return_code><env>${name}</env></xml>`);
      }
      res.writeHead(200, { "content-type": "application/json", "x-served-by": name });
      res.end(JSON.stringify({ ok: true, env: name }));
    });
  });
  // Every header is read, as the dispatcher forwards them (by default Node keeps about the first thousand).
  server.maxHeadersCount = 0;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

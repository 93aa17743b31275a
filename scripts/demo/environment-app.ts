// The demo's payment app of one environment (`production`, or the test environment `sit`, which
// `make run` starts under the callback agent). `POST /api/pay {orderNo}` opens a payment: that is
// interface A, the request the agent watches to learn which orders sit created. Everything else
// is a callback from the payment platform, relayed by callback-dispatcher: printed, and answered
// with this environment's name so the caller sees where it landed.
import { createServer, type IncomingMessage } from "node:http";

const [env, port, host = "127.0.0.1"] = process.argv.slice(2);
if (!env || !port) {
  console.error("usage: environment-app <env> <port> [host]");
  process.exit(2);
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const json = (status: number, value: unknown) => [status, { "content-type": "application/json" }, JSON.stringify(value)] as const;

async function answer(req: IncomingMessage): Promise<readonly [number, Record<string, string>, string]> {
  if (req.url === "/healthz") return json(200, { status: "ok" });
  const body = await bodyOf(req);
  if (req.method === "POST" && req.url === "/api/pay") {
    let orderNo: unknown;
    try {
      orderNo = (JSON.parse(body) as { orderNo?: unknown }).orderNo;
    } catch {}
    if (typeof orderNo !== "string" || !orderNo) return json(400, { error: 'send {"orderNo": "…"}' });
    console.log(`payment opened for order ${orderNo}`);
    return json(200, { orderNo, status: "PENDING", env });
  }
  console.log(`callback received: ${req.method} ${req.url} ${body}`);
  return json(200, { code: "SUCCESS", receivedBy: env });
}

const server = createServer((req, res) => {
  answer(req).then(
    ([status, headers, text]) => res.writeHead(status, headers).end(text),
    (err: Error) => res.writeHead(400).end(err.message),
  );
});
server.listen(Number(port), host, () => console.log(`${env} payment app on http://${host}:${port}`));
// A stub has nothing to drain.
process.on("SIGTERM", () => process.exit(0));

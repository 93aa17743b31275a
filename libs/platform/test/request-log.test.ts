import assert from "node:assert/strict";
import { once } from "node:events";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createLogger, redactCredentials } from "@opsplane/platform";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";
import pg from "pg";
import { services } from "../../../scripts/services.js";
import { startServiceProcess } from "./service-process.js";

const secret = "SeCrEt-7f3a9c";

describe("credentials never reach a service's log", () => {
  let db: TestDatabase;
  let client: pg.Client;
  before(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  after(async () => {
    await client.end();
    await db.drop();
  });

  for (const s of services) {
    test(`${s.name}: a request with credentials in its query and headers is logged and audited without them`, async () => {
      const { port, child, log: output } = await startServiceProcess(s.name, { DATABASE_URL: db.url, LOG_LEVEL: "info" });
      try {
        // A route every service serves through the kit (the service-info RPC), as a widget socket or a signed link would be called.
        const query = `?session=abc&token=${secret}&API_KEY=${secret}&X-Amz-Signature=${secret}&page=2`;
        const res = await fetch(`http://127.0.0.1:${port}/ops.v1.ServiceInfoService/GetServiceInfo${query}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${secret}`, cookie: `sid=${secret}` },
          body: "{}",
        });
        // Refused (no such API key): the denial is logged and audited too.
        assert.equal(res.status, 401);
        await eventually("the request in the log", () => output().includes("GetServiceInfo?"));
        const schema = s.name.replace(/-/g, "_");
        const audited = await eventually("the denial in the audit log", async () => {
          const { rows } = await client.query<{ row: string }>(
            `SELECT row_to_json(a)::text AS row FROM ${schema}.audit_log a WHERE action = 'access.denied'`,
          );
          return rows[0]?.row;
        });
        const exit = once(child, "exit");
        child.kill("SIGTERM");
        await exit;
        const log = output();
        assert.ok(!log.includes(secret), `the log holds the secret:\n${log.split("\n").filter((l) => l.includes(secret))[0]}`);
        const line = JSON.parse(log.split("\n").find((l) => l.includes("GetServiceInfo?"))!) as { req: { url: string } };
        assert.equal(
          line.req.url,
          "/ops.v1.ServiceInfoService/GetServiceInfo?session=abc&token=[redacted]&API_KEY=[redacted]&X-Amz-Signature=[redacted]&page=2",
        );
        assert.ok(!audited.includes(secret), `the audit log holds the secret: ${audited}`);
      } finally {
        child.kill("SIGKILL");
      }
    });
  }

  test("errors, URLs and headers a service logs itself lose their credentials", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger("t", "info", destination);
    log.error({ err: new Error(`GET https://files.example/a.zip?X-Amz-Signature=${secret} failed`) }, "download failed");
    log.warn({ err: `connect to redis://:${secret}@cache:6379 refused` }, "redis error");
    log.info({
      url: `/cb?orderId=42&sign=${secret}`,
      headers: { authorization: `Bearer ${secret}`, "x-assist-token": secret, accept: "*/*" },
    });
    assert.equal(lines.length, 3);
    assert.ok(!lines.join("").includes(secret), lines.join(""));
    const [error, warning, info] = lines.map((l) => JSON.parse(l));
    assert.equal(error.err.message, "GET https://files.example/a.zip?X-Amz-Signature=[redacted] failed");
    assert.equal(warning.err, "connect to redis://:[redacted]@cache:6379 refused");
    assert.equal(info.url, "/cb?orderId=42&sign=[redacted]");
    assert.deepEqual(info.headers, { authorization: "[redacted]", "x-assist-token": "[redacted]", accept: "*/*" });
  });

  test("URLs and error messages quoted in a log line lose their credentials, and keep everything else", () => {
    assert.equal(
      redactCredentials("GET /assist/ws/widget?session=1b2c&token=abc&access_token=x#id_token=y"),
      "GET /assist/ws/widget?session=1b2c&token=[redacted]&access_token=[redacted]#id_token=[redacted]",
    );
    assert.equal(
      redactCredentials('fetch https://u:p4ss@files.example/a.zip?X-Amz-Credential=k&X-Amz-Date=20250101 failed"'),
      'fetch https://u:[redacted]@files.example/a.zip?X-Amz-Credential=[redacted]&X-Amz-Date=20250101 failed"',
    );
    assert.equal(
      redactCredentials("/cb?orderId=42&sign=abc&Sig=d&client%5Fsecret=e"),
      "/cb?orderId=42&sign=[redacted]&Sig=[redacted]&client%5Fsecret=[redacted]",
    );
    assert.equal(redactCredentials("/pay?PHPSESSID=d&session=e;jsessionid=f"), "/pay?PHPSESSID=[redacted]&session=e;jsessionid=[redacted]");
    assert.equal(redactCredentials("/things?keyword=x&monkey=y"), "/things?keyword=x&monkey=y");
    // A `;` does not end a credential's value: URLSearchParams (and so the receiver) reads `sign=abc;defSECRET` whole.
    assert.equal(redactCredentials("/cb?sign=abc;defSECRET&access_token=TOK1&n=1"), "/cb?sign=[redacted]&access_token=[redacted]&n=1");
  });

  test("a credential's whole value is redacted, whatever characters it starts with or holds", () => {
    for (const value of ["'QUOTESECRET1'", '"QUOTESECRET2"', "<QUOTESECRET3>", "ok'QUOTESECRET4", "a<b>QUOTESECRET5\"'"]) {
      assert.equal(redactCredentials(`/cb?token=${value}&page=2`), "/cb?token=[redacted]&page=2");
      assert.equal(redactCredentials(`GET /cb?token=${value} failed`), "GET /cb?token=[redacted] failed");
    }
    assert.equal(redactCredentials("/cb?ok'token=QUOTESECRET6#x"), "/cb?ok'token=[redacted]#x");
  });

  test("token-like parameters under other names are credentials too", () => {
    assert.equal(
      redactCredentials("/login?jwt=a&id_token=b&refresh_token=c&client_assertion=d&SAMLResponse=e&passcode=f&otp=g&state=h"),
      "/login?jwt=[redacted]&id_token=[redacted]&refresh_token=[redacted]&client_assertion=[redacted]&SAMLResponse=[redacted]&passcode=[redacted]&otp=[redacted]&state=h",
    );
    assert.equal(redactCredentials("/steps?footprint=1&otpType=sms"), "/steps?footprint=1&otpType=sms");
  });
});

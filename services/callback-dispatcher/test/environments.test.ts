import assert from "node:assert/strict";
import type { LookupAddress } from "node:dns";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import { Pool } from "undici";
import { createUrlPolicy, parseUrlAllowList, type UrlAllowList } from "../src/environment-url-policy.js";
import { startDispatcher } from "./helpers/dispatcher.js";
import { sign, startSignedStub } from "./helpers/signed-stub.js";

const secret = "platform-secret";

/** Sends callbacks back to back on four connections while `during` runs; answers every status and server seen. */
async function callbacksDuring(url: string, during: () => Promise<void>) {
  const statuses: number[] = [];
  const servedBy = new Set<string>();
  let done = false;
  const body = Buffer.from(JSON.stringify({ out_trade_no: "PROD-ORDER" }));
  const sender = async () => {
    while (!done) {
      const res = await fetch(`${url}/notify/pay`, { method: "POST", headers: { "x-signature": sign(secret, body) }, body });
      await res.arrayBuffer();
      statuses.push(res.status);
      servedBy.add(res.headers.get("x-served-by") ?? "");
    }
  };
  const senders = [sender(), sender(), sender(), sender()];
  try {
    await during();
  } finally {
    done = true;
    await Promise.all(senders);
  }
  return { statuses, servedBy };
}

describe("production is never left without an environment", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;
  const stubs: Array<Awaited<ReturnType<typeof startSignedStub>>> = [];

  before(async () => {
    for (const name of ["prod-a", "prod-b", "prod-c"]) stubs.push(await startSignedStub(name, secret));
    d = await startDispatcher();
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: stubs[0]!.url, production: true })).status, 200);
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: stubs[2]!.url })).status, 200);
  });

  after(async () => {
    await d?.close();
    await Promise.all(stubs.map((s) => s.close()));
  });

  const production = async () =>
    (
      (await d.api("GET", "/_dispatcher/v1/environments")).body.environments as Array<{
        name: string;
        production: boolean;
        baseUrl: string;
      }>
    ).find((e) => e.production);

  test("a registration whose environment was deleted says so in its lookup: its callbacks go to production", async () => {
    assert.equal((await d.api("PUT", "/_dispatcher/v1/environments/gone", { baseUrl: stubs[2]!.url })).status, 200);
    const rule = {
      interface: { pattern: "/api/gone", id: { kind: "json", expr: "orderNo" } },
      callback: { pattern: "/notify/gone", id: { kind: "json", expr: "orderNo" } },
      ttlSeconds: 600,
    };
    const saved = await d.api("PUT", "/_dispatcher/v1/rules/gone", rule);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    assert.equal(
      (await d.api("POST", "/_dispatcher/v1/registrations", { env: "gone", registrations: [{ rule: "gone", id: "GONE-1" }] })).status,
      200,
    );
    const lookup = async () => (await d.api("GET", "/_dispatcher/v1/registrations/gone/GONE-1")).body;
    assert.deepEqual([(await lookup()).env, (await lookup()).environmentConfigured], ["gone", true]);
    assert.equal((await d.api("DELETE", "/_dispatcher/v1/environments/gone")).status, 204);
    // Before, it still read "gone" as if callbacks went there.
    await eventually("the deletion seen", async () => (await lookup()).environmentConfigured === false);
    assert.equal((await lookup()).env, "gone");
    assert.equal((await d.api("GET", "/_dispatcher/v1/registrations/gone/NEVER")).body.environmentConfigured, null);
  });

  test("deleting production is refused with 409 naming why, and callbacks keep reaching it", async () => {
    const res = await d.api("DELETE", "/_dispatcher/v1/environments/prod");
    assert.equal(res.status, 409);
    assert.match(String(res.body.message), /prod is production and cannot be deleted.*503.*replacesProduction/);
    assert.equal((await production())?.name, "prod");
    const cb = await fetch(`${d.url}/notify/anything`, { method: "POST", body: "x", headers: { "x-signature": sign(secret, "x") } });
    assert.equal(cb.status, 200);
  });

  test("demoting production without a replacement is refused with 409", async () => {
    const res = await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: stubs[0]!.url, production: false });
    assert.equal(res.status, 409);
    assert.match(String(res.body.message), /prod is production.*replacesProduction/);
    assert.equal((await production())?.name, "prod");
  });

  test("moving production's base URL is one call that keeps it production: callbacks sent meanwhile all succeed", async () => {
    // A PUT without `production`, as a script moving the URL would send it.
    const { statuses, servedBy } = await callbacksDuring(d.url, async () => {
      const res = await d.api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: stubs[1]!.url });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    });
    assert.ok(statuses.length > 0);
    assert.deepEqual([...new Set(statuses)], [200], `every callback answered 200 (got ${statuses.join(",")})`);
    assert.equal((await production())?.baseUrl, stubs[1]!.url);
    assert.ok([...servedBy].every((s) => s === "prod-a" || s === "prod-b"));
    const moved = await fetch(`${d.url}/notify/x`, { method: "POST", body: "z", headers: { "x-signature": sign(secret, "z") } });
    assert.equal(moved.headers.get("x-served-by"), "prod-b");
  });

  test("switching production to another environment is one call (replacesProduction): callbacks sent meanwhile all succeed", async () => {
    const { statuses } = await callbacksDuring(d.url, async () => {
      const res = await d.api("PUT", "/_dispatcher/v1/environments/prod2", {
        baseUrl: stubs[0]!.url,
        production: true,
        replacesProduction: "prod",
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    });
    assert.deepEqual([...new Set(statuses)], [200], `every callback answered 200 (got ${statuses.join(",")})`);
    assert.equal((await production())?.name, "prod2");
    const after = await fetch(`${d.url}/notify/x`, { method: "POST", body: "y", headers: { "x-signature": sign(secret, "y") } });
    assert.equal(after.headers.get("x-served-by"), "prod-a");
    // The replaced one is a test environment now, and may be deleted.
    assert.equal((await d.api("DELETE", "/_dispatcher/v1/environments/prod")).status, 204);
    const audit = await d.svc.ctx.pool.query<{ after: { replacedProduction?: string } }>(
      "SELECT after FROM audit_log WHERE target = 'environment/prod2' ORDER BY id DESC LIMIT 1",
    );
    assert.equal(audit.rows[0]?.after.replacedProduction, "prod");
  });

  // A switch that waited for another's lock read no production at all, and said so (a trial: 2 of 9 refusals).
  test("switches racing each other: one wins, each of the others is refused naming the production it then found", async () => {
    const current = (await production())!.name;
    const racers = Array.from({ length: 8 }, (_, i) => `race${i}`);
    const answers = await Promise.all(
      racers.map((name) =>
        d.api("PUT", `/_dispatcher/v1/environments/${name}`, { baseUrl: stubs[0]!.url, production: true, replacesProduction: current }),
      ),
    );
    const winners = racers.filter((_, i) => answers[i]!.status === 200);
    assert.equal(winners.length, 1, JSON.stringify(answers.map((a) => a.status)));
    for (const a of answers.filter((x) => x.status !== 200)) {
      assert.equal(a.status, 409);
      assert.match(String(a.body.message), new RegExp(`^replacesProduction names ${current}, but the production environment is race\\d$`));
    }
    // Back as it was for the tests below.
    const back = await d.api("PUT", `/_dispatcher/v1/environments/${current}`, {
      baseUrl: stubs[0]!.url,
      production: true,
      replacesProduction: winners[0],
    });
    assert.equal(back.status, 200, JSON.stringify(back.body));
    // The others were refused whole: never created.
    assert.equal((await d.api("DELETE", `/_dispatcher/v1/environments/${winners[0]}`)).status, 204);
  });

  test("making a second production without naming the one it replaces is refused, naming it", async () => {
    const res = await d.api("PUT", "/_dispatcher/v1/environments/prod3", { baseUrl: stubs[1]!.url, production: true });
    assert.equal(res.status, 409);
    assert.match(String(res.body.message), /prod2 is already production.*"replacesProduction": "prod2"/);
    const wrong = await d.api("PUT", "/_dispatcher/v1/environments/prod3", {
      baseUrl: stubs[1]!.url,
      production: true,
      replacesProduction: "sit",
    });
    assert.equal(wrong.status, 409);
    assert.match(String(wrong.body.message), /replacesProduction names sit, but the production environment is prod2/);
    // Naming the right one without making it production: the answer says what is missing, not who is production.
    const notMade = await d.api("PUT", "/_dispatcher/v1/environments/prod3", { baseUrl: stubs[1]!.url, replacesProduction: "prod2" });
    assert.equal(notMade.status, 409);
    assert.equal(notMade.body.message, `replacesProduction makes prod3 production in prod2's place: send "production": true with it`);
    assert.equal((await production())?.name, "prod2");
  });
});

describe("where environment base URLs may point", () => {
  let d: Awaited<ReturnType<typeof startDispatcher>>;

  before(async () => {
    d = await startDispatcher({ ENVIRONMENT_URL_ALLOW: "127.0.0.0/8, *.sit.example.test" });
  });

  after(async () => {
    await d?.close();
  });

  const put = (baseUrl: string) => d.api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl });

  test("link-local and cloud metadata addresses and names are refused with 400 naming why", async () => {
    for (const [baseUrl, why] of [
      ["http://169.254.169.254/latest", /169\.254\.169\.254 is a link-local or cloud metadata address/],
      ["http://2852039166/", /169\.254\.169\.254 is a link-local/], // the same address written as a number
      ["http://169.254.10.1:8080/", /link-local/],
      ["http://[fe80::1]/", /fe80::1 is a link-local/],
      ["http://[fd00:ec2::254]/", /fd00:ec2::254 is a link-local or cloud metadata/],
      ["http://[::ffff:169.254.169.254]/", /link-local/],
      ["http://100.100.100.200/", /cloud metadata/],
      ["http://metadata.google.internal/computeMetadata/v1", /metadata\.google\.internal is a cloud metadata service/],
      ["http://METADATA.google.internal./", /cloud metadata service/],
    ] as const) {
      const res = await put(baseUrl);
      assert.equal(res.status, 400, `${baseUrl}: ${JSON.stringify(res.body)}`);
      assert.match(String(res.body.message), why, baseUrl);
    }
    assert.deepEqual((await d.api("GET", "/_dispatcher/v1/environments")).body.environments, []);
  });

  test("with ENVIRONMENT_URL_ALLOW set, only its hosts and networks are accepted", async () => {
    assert.equal((await put("http://127.0.0.1:9/")).status, 200);
    // A name is judged by what it resolves to: localhost is 127.0.0.1, inside 127.0.0.0/8.
    assert.equal((await put("http://localhost:9/")).status, 200);
    const outside = await put("http://10.1.2.3/");
    assert.equal(outside.status, 400);
    assert.match(String(outside.body.message), /10\.1\.2\.3 is not in ENVIRONMENT_URL_ALLOW/);
    // Admitted by name: saved even before its DNS exists (each connection is checked when it does).
    assert.equal((await put("http://app.sit.example.test/")).status, 200);
    const unresolvable = await put("http://app.elsewhere.test/");
    assert.equal(unresolvable.status, 400);
    assert.match(String(unresolvable.body.message), /app\.elsewhere\.test does not resolve, so it cannot be checked/);
  });

  test("an ENVIRONMENT_URL_ALLOW entry that is no host, address or range is named", () => {
    assert.equal(parseUrlAllowList("10.0.0.0/33"), 'ENVIRONMENT_URL_ALLOW: "10.0.0.0/33" is not an address or a CIDR range');
    assert.match(String(parseUrlAllowList("http://x")), /"http:\/\/x" is not a host name/);
  });
});

describe("names are checked by what they resolve to, when saved and at every connection", () => {
  // The system resolver here knows no name that points at a metadata address; this one does.
  const answers = new Map<string, string>([
    ["evil.example.test", "169.254.169.254"],
    ["v6.example.test", "fe80::1"],
    ["rebind.example.test", "127.0.0.1"],
  ]);
  const resolveAll = async (host: string): Promise<LookupAddress[]> => {
    const address = answers.get(host);
    if (!address) throw Object.assign(new Error(`${host} not found`), { code: "ENOTFOUND" });
    return [{ address, family: address.includes(":") ? 6 : 4 }];
  };
  const anyHost = parseUrlAllowList("") as UrlAllowList;
  const policy = createUrlPolicy(anyHost, resolveAll);

  test("a name resolving to a link-local or metadata address is refused when saved", async () => {
    await assert.rejects(policy.check(new URL("http://evil.example.test/")), /evil\.example\.test resolves to 169\.254\.169\.254/);
    await assert.rejects(policy.check(new URL("http://v6.example.test/")), /v6\.example\.test resolves to fe80::1/);
    await policy.check(new URL("http://rebind.example.test/"));
  });

  test("a name that resolves to a metadata address later is refused at connection time: the callback is not sent there", async () => {
    let reached = 0;
    const target = http.createServer((_req, res) => {
      reached++;
      res.end("ok");
    });
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    const port = (target.address() as AddressInfo).port;
    const pool = new Pool(`http://rebind.example.test:${port}`, { connect: { lookup: policy.lookup } });
    try {
      assert.equal((await pool.request({ method: "GET", path: "/" })).statusCode, 200);
      await pool.close();
      answers.set("rebind.example.test", "169.254.169.254");
      const again = new Pool(`http://rebind.example.test:${port}`, { connect: { lookup: policy.lookup } });
      await assert.rejects(again.request({ method: "GET", path: "/" }), /refused: rebind\.example\.test resolves to 169\.254\.169\.254/);
      await again.close();
      assert.equal(reached, 1);
    } finally {
      target.close();
    }
  });
});

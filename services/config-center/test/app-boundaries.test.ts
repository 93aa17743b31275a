import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { configCenterEnv } from "../src/config.js";
import { call, Instance, keys, type Reply, startCenters } from "./harness.js";

type Centers = Awaited<ReturnType<typeof startCenters>>;

const token = async (base: string, appId: string, secret: string) => {
  const t = await call(base, "POST", "/config/v1/token", { body: { appId, secret } });
  assert.equal(t.status, 200, t.body.message);
  return t.body.token as string;
};
const register = (base: string, t: string, env: string) =>
  call(base, "POST", "/config/v1/instances", { token: t, body: { env, hostName: "h", ip: "10.0.0.9", servicePort: 8080 } });

/** The socket handshake's refusal: its status and message (the harness only rejects with the status). */
function socketRefusal(base: string, instanceId: string, t: string): Promise<{ status: number; message: string }> {
  const ws = new WebSocket(`${base.replace("http", "ws")}/config/v1/instances/${instanceId}/socket`, { headers: { "x-config-token": t } });
  return new Promise((resolve, reject) => {
    ws.once("open", () => reject(new Error("the socket was accepted")));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, message: JSON.parse(body).message }));
    });
  });
}

describe("an app's credentials act only for the environments it was granted", () => {
  let c: Centers;
  let base: string;
  before(async () => {
    // The service's own default, not the harness's (which grants prod to the flows' first-use apps).
    c = await startCenters(1, {
      redis: true,
      env: { DEFAULT_APP_ENVIRONMENTS: configCenterEnv.DEFAULT_APP_ENVIRONMENTS.parse(undefined) },
    });
    base = c.urls[0]!;
  });
  after(async () => c?.close());

  test("by default production is not granted: an app admitted on first use registers in uat, not in prod", async () => {
    assert.ok(!configCenterEnv.DEFAULT_APP_ENVIRONMENTS.parse(undefined).split(",").includes("prod"));
    const put = await call(base, "PUT", "/config/v1/items/technical/wallet/prod/db.main", {
      role: "operator",
      body: { value: { url: "postgres://db/wallet", password: "prod-db-password" } },
    });
    assert.equal(put.status, 200, put.body.message);
    const t = await token(base, "wallet", "wallet-secret-01");
    const prod = await register(base, t, "prod");
    assert.equal(prod.status, 403);
    assert.match(prod.body.message, /app wallet is not granted environment prod/);
    assert.equal((await register(base, t, "uat")).status, 201);
    const record = await call(base, "GET", "/config/v1/apps/wallet", { role: "viewer" });
    assert.equal(record.body.environments, null, "no grant of its own: the defaults apply");
  });

  test("an admin's list is what counts; taking prod away refuses the prod instance's metadata and socket", async () => {
    const granted = await call(base, "PUT", "/config/v1/apps/loan", {
      role: "admin",
      body: { secret: "loan-secret-0123", environments: ["sit", "uat"] },
    });
    assert.equal(granted.status, 200, granted.body.message);
    assert.deepEqual(granted.body.environments, ["sit", "uat"]);
    const t = await token(base, "loan", "loan-secret-0123");
    const prod = await register(base, t, "prod");
    assert.equal(prod.status, 403);
    assert.match(prod.body.message, /not granted environment prod/);

    assert.equal((await call(base, "PUT", "/config/v1/apps/loan", { role: "admin", body: { environments: ["prod", "uat"] } })).status, 200);
    const instance = await Instance.start(base, { appId: "loan", secret: "loan-secret-0123" }, { env: "prod" });
    assert.equal((await call(base, "PUT", "/config/v1/apps/loan", { role: "admin", body: { environments: ["uat"] } })).status, 200);
    assert.deepEqual(await instance.whenClosed(), { code: 4001, reason: "app environments changed: reconnect" });
    const metadata = await call(base, "GET", `/config/v1/instances/${instance.instanceId}/metadata`, { token: instance.token });
    assert.equal(metadata.status, 403);
    assert.match(metadata.body.message, /not granted environment prod/);
    const socket = await socketRefusal(base, instance.instanceId, instance.token);
    assert.equal(socket.status, 403);
    assert.match(socket.message, /not granted environment prod/);

    const bad = await call(base, "PUT", "/config/v1/apps/loan", { role: "admin", body: { environments: ["Prod!"] } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /environment "Prod!"/);
  });
});

describe("sequences and locks belong to apps", () => {
  let c: Centers;
  let base: string;
  before(async () => {
    c = await startCenters(1, { redis: false });
    base = c.urls[0]!;
  });
  after(async () => c?.close());

  test("only the apps a sequence lists draw from it", async () => {
    const made = await call(base, "PUT", "/config/v1/sequences/loan-no", {
      role: "admin",
      body: { pattern: "LN{seq:6}", apps: ["loan"] },
    });
    assert.equal(made.status, 200, made.body.message);
    assert.deepEqual(made.body.apps, ["loan"]);
    const other = await call(base, "POST", "/config/v1/sequences/next", {
      token: await token(base, "crm", "crm-secret-0123"),
      body: { name: "loan-no" },
    });
    assert.equal(other.status, 403);
    assert.match(other.body.message, /app crm may not draw from sequence loan-no/);
    const own = await call(base, "POST", "/config/v1/sequences/next", {
      token: await token(base, "loan", "loan-secret-0123"),
      body: { name: "loan-no" },
    });
    assert.equal(own.status, 200, own.body.message);
    assert.equal(own.body.first, 1, "the other app's attempt took no numbers");
  });

  test("a lock taken by one app can be neither taken nor released by another", async () => {
    const loan = await token(base, "loan", "loan-secret-0123");
    const crm = await token(base, "crm", "crm-secret-0123");
    const held = await call(base, "POST", "/config/v1/locks/acquire", {
      token: loan,
      body: { name: "loan:settle", holder: "i1", leaseMs: 60000 },
    });
    assert.equal(held.body.acquired, true);
    const fencingToken = held.body.lock.fencingToken;
    const release = await call(base, "POST", "/config/v1/locks/release", { token: crm, body: { name: "loan:settle", fencingToken } });
    assert.equal(release.status, 403);
    assert.match(release.body.message, /lock loan:settle belongs to another app/);
    assert.equal(
      (await call(base, "POST", "/config/v1/locks/release", { token: loan, body: { name: "loan:settle", fencingToken } })).body.released,
      true,
    );
    const take = await call(base, "POST", "/config/v1/locks/acquire", {
      token: crm,
      body: { name: "loan:settle", holder: "x", leaseMs: 86400000 },
    });
    assert.equal(take.status, 403, "free, but still the loan app's");
    const again = await call(base, "POST", "/config/v1/locks/acquire", {
      token: loan,
      body: { name: "loan:settle", holder: "i2", leaseMs: 60000 },
    });
    assert.equal(again.body.acquired, true);

    // A name claimed by the wrong app first is given back by an admin's force-release.
    const squatted = await call(base, "POST", "/config/v1/locks/acquire", {
      token: crm,
      body: { name: "loan:close", holder: "x", leaseMs: 60000 },
    });
    assert.equal(squatted.body.acquired, true);
    assert.equal((await call(base, "POST", "/config/v1/locks/force-release", { role: "admin", body: { name: "loan:close" } })).status, 200);
    const claimed = await call(base, "POST", "/config/v1/locks/acquire", {
      token: loan,
      body: { name: "loan:close", holder: "i1", leaseMs: 60000 },
    });
    assert.equal(claimed.body.acquired, true);
  });

  test("an admin declares a lock with the apps that may use it: another app cannot take the name first, nor keep one it took", async () => {
    const loan = await token(base, "loan", "loan-secret-0123");
    const crm = await token(base, "crm", "crm-secret-0123");
    const acquire = (t: string, name: string) =>
      call(base, "POST", "/config/v1/locks/acquire", { token: t, body: { name, holder: "i1", leaseMs: 60000 } });

    // crm took a name the loan app needs, before anyone declared it.
    const squatted = await acquire(crm, "loan:batch");
    assert.equal(squatted.body.acquired, true);
    const byOperator = await call(base, "PUT", "/config/v1/locks/loan:batch", { role: "operator", body: { apps: ["loan"] } });
    assert.equal(byOperator.status, 403);
    const declared = await call(base, "PUT", "/config/v1/locks/loan:batch", {
      role: "admin",
      body: { apps: ["loan"], description: "nightly batch", expectRevision: 0 },
    });
    assert.equal(declared.status, 200, declared.body.message);
    assert.deepEqual([declared.body.apps, declared.body.state, declared.body.revision], [["loan"], "held", 1]);
    // Its lease stays until its holder lets go; then crm cannot take the name again, and loan can.
    const released = await call(base, "POST", "/config/v1/locks/release", {
      token: crm,
      body: { name: "loan:batch", fencingToken: squatted.body.lock.fencingToken },
    });
    assert.equal(released.body.released, true);
    const retaken = await acquire(crm, "loan:batch");
    assert.equal(retaken.status, 403);
    assert.match(retaken.body.message, /lock loan:batch is declared for other apps/);
    assert.equal((await acquire(loan, "loan:batch")).body.acquired, true);

    // Declared over Connect before anyone used it: free, and still no other app's.
    const rpc = await fetch(`${base}/ops.v1.ConfigCenterService/PutLock`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.admin}` },
      body: JSON.stringify({ name: "risk:scan", apps: ["risk"] }),
    });
    assert.equal(rpc.status, 200);
    assert.deepEqual(((await rpc.json()) as { lock: { apps: unknown } }).lock.apps, { values: ["risk"] });
    assert.equal((await acquire(crm, "risk:scan")).status, 403);
    const stale = await call(base, "PUT", "/config/v1/locks/risk:scan", { role: "admin", body: { apps: [], expectRevision: 0 } });
    assert.equal(stale.status, 409);

    const listed = (await call(base, "GET", "/config/v1/locks", { role: "viewer" })).body.locks as Array<{ name: string; apps: unknown }>;
    assert.deepEqual(
      listed.filter((l) => ["loan:batch", "risk:scan", "loan:settle"].includes(l.name)).map((l) => [l.name, l.apps]),
      [
        ["loan:batch", ["loan"]],
        ["loan:settle", null],
        ["risk:scan", ["risk"]],
      ],
    );
    const audit = await call(base, "GET", "/config/v1/audit?target=lock/loan:batch", { role: "operator" });
    assert.equal(audit.body.entries[0].action, "lock.declare");
    assert.deepEqual(audit.body.entries[0].after.apps, ["loan"]);
  });
});

/** A token request from one loopback address (127.0.0.x), as if from another client machine; over REST or Connect. */
function askFrom(
  base: string,
  address: string,
  appId: string,
  secret: string,
  path = "/config/v1/token",
  headers: Record<string, string> = {},
): Promise<Reply> {
  const body = JSON.stringify({ appId, secret });
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, {
      method: "POST",
      localAddress: address,
      headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    req.once("response", (res) => {
      let text = "";
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(text),
          headers: new Headers(Object.entries(res.headers).map(([k, v]) => [k, String(v)])),
        }),
      );
    });
    req.once("error", reject);
    req.end(body);
  });
}

for (const redis of [true, false]) {
  describe(`failed token requests are throttled per app id and per address (${redis ? "Redis" : "memory"})`, () => {
    let c: Centers;
    let base: string;
    before(async () => {
      c = await startCenters(1, { redis, env: { TOKEN_FAILURE_LIMIT: "3", TOKEN_FAILURE_WINDOW_SECONDS: "3600" } });
      base = c.urls[0]!;
      await token(base, "loan", "loan-secret-0123");
      await token(base, "crm", "crm-secret-0123");
      await call(base, "PUT", "/config/v1/settings", { role: "admin", body: { admitUnknownApps: false } });
    });
    after(async () => c?.close());

    const same = (a: Reply, b: Reply) => assert.deepEqual([a.status, a.body.message], [b.status, b.body.message]);

    test("an unknown app and a wrong secret get the same answer", async () => {
      same(await askFrom(base, "127.0.0.10", "crm", "wrong-secret-1"), await askFrom(base, "127.0.0.11", "stranger", "wrong-secret-1"));
    });

    test("a secret outside 8-256 characters is a 400 naming the rule, not a 401, and no guess counted", async () => {
      for (let n = 0; n < 4; n++) {
        const short = await askFrom(base, "127.0.0.50", "crm", "wrong");
        assert.equal(short.status, 400);
        assert.match(short.body.message, /secret must be 8-256 characters/);
      }
      const long = await askFrom(base, "127.0.0.50", "crm", "x".repeat(257));
      assert.equal(long.status, 400);
      assert.match(long.body.message, /secret must NOT have more than 256 characters/);
      assert.equal((await askFrom(base, "127.0.0.50", "crm", "crm-secret-0123")).status, 200);
    });

    test("guessing one app's secret from many addresses ends in 429 with Retry-After, even for the right secret", async () => {
      for (const address of ["127.0.0.20", "127.0.0.21", "127.0.0.22"])
        assert.equal((await askFrom(base, address, "loan", "wrong-secret")).status, 401);
      const throttled = await askFrom(base, "127.0.0.23", "loan", "loan-secret-0123");
      assert.equal(throttled.status, 429);
      assert.ok(Number(throttled.headers.get("retry-after")) > 0);
      assert.match(throttled.body.message, /too many failed token requests/);
    });

    test("guessing many app ids from one address ends in 429 there, and other addresses are unaffected", async () => {
      for (const appId of ["guess-a", "guess-b", "guess-c"])
        assert.equal((await askFrom(base, "127.0.0.30", appId, "wrong-secret")).status, 401);
      const unknown = await askFrom(base, "127.0.0.30", "guess-d", "wrong-secret");
      const wrong = await askFrom(base, "127.0.0.30", "crm", "wrong-secret");
      same(unknown, wrong);
      assert.equal(unknown.status, 429);
      assert.equal((await askFrom(base, "127.0.0.31", "crm", "crm-secret-0123")).status, 200);
    });

    test("over Connect too: guessing many app ids from one address ends in 429 there, whatever the address header says", async () => {
      const overConnect = "/ops.v1.ConfigAppService/IssueToken";
      // A caller claiming another address in the header config-center uses internally changes nothing.
      for (const appId of ["rpc-guess-a", "rpc-guess-b", "rpc-guess-c"]) {
        const spoofed = { "x-opsplane-client-address": `10.9.9.${appId.length}${appId.at(-1)}` };
        assert.equal((await askFrom(base, "127.0.0.40", appId, "wrong-secret", overConnect, spoofed)).status, 401);
      }
      const throttled = await askFrom(base, "127.0.0.40", "rpc-guess-d", "wrong-secret", overConnect);
      assert.equal(throttled.status, 429);
      assert.match(throttled.body.message, /too many failed token requests/);
      assert.ok(Number(throttled.headers.get("retry-after")) > 0);
      // The REST view counts the same address: it is throttled there too.
      assert.equal((await askFrom(base, "127.0.0.40", "crm", "crm-secret-0123")).status, 429);
      assert.equal((await askFrom(base, "127.0.0.41", "crm", "crm-secret-0123", overConnect)).status, 200);
    });
  });
}

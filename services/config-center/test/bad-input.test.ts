import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually } from "@opsplane/testing";
import type pg from "pg";
import WebSocket from "ws";
import { call, centerDb, Instance, type Json, keys, startCenters } from "./harness.js";

const loan = { appId: "loan", secret: "loan-secret-0123" };
/** A lone UTF-16 surrogate as a client's JSON spells it: the six characters `\ud800` in the body's text. */
const lone = "\\ud800";
/** The platform's refusal of a REST body's field (the kit's input guard). */
const loneReason = (where: string) => `body/${where} must not contain a lone surrogate (not valid Unicode)`;
/** A dictionary import's refusal, naming the field of its entry as the file shows it. */
const entryLoneReason = (where: string) => `${where} must not contain a lone surrogate (not valid Unicode)`;

describe("bad input is refused with the reason and leaves nothing half-written (single node, no Redis)", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let base: string;
  let db: pg.Client;
  const changeCount = async () => (await db.query("SELECT count(*)::int AS n FROM changes")).rows[0].n as number;

  before(async () => {
    env = await startCenters(1, { redis: false, env: { SOCKET_MAX_MESSAGES_PER_SECOND: "5", IMPORT_BODY_LIMIT_BYTES: "1048576" } });
    base = env.urls[0]!;
    db = await centerDb(env.db.url);
  });
  after(async () => {
    await db.end();
    await env.close();
  });

  test("values that break their schema, their category's or their rule type's are refused, naming where", async () => {
    const before = await changeCount();
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["business/_/_/dict.banks", { value: [{ code: "12", name: "x" }], category: "bank-codes" }, /\/0\/code must match pattern/],
      [
        "business/_/_/bins",
        { value: [{ bin: "622202", bank: "ICBC", cardType: "gold" }], category: "card-bin" },
        /\/0\/cardType must be equal to one of the allowed values \(debit, credit, prepaid, semi-credit\)/,
      ],
      ["business/_/_/x", { value: "text", category: "no-such-category" }, /business category "no-such-category" must be one of/],
      // Names every object has (Object.prototype's) are no category nor rule type: they answered 500.
      ["business/_/_/x", { value: "text", category: "constructor" }, /business category "constructor" must be one of/],
      ["business/_/_/x", { value: "text", category: "toString" }, /business category "toString" must be one of/],
      ["governance/loan/_/constructor/loan.apply", { value: {} }, /a governance rule's key is "<type>\/<interface or queue code>"/],
      ["governance/loan/_/hasOwnProperty/loan.apply", { value: {} }, /a governance rule's key is "<type>\/<interface or queue code>"/],
      [
        "business/_/_/own",
        { value: { limit: -1 }, schema: { type: "object", properties: { limit: { type: "integer", minimum: 0 } } } },
        /\/limit must be >= 0/,
      ],
      ["business/_/_/bad-schema", { value: 1, schema: { type: "no-such-type" } }, /schema is not a valid JSON Schema/],
      ["governance/loan/_/rate-limit/loan.apply", { value: { tps: -5 } }, /\/tps must be > 0/],
      ["governance/loan/_/throttle/loan.apply", { value: {} }, /a governance rule's key is "<type>\/<interface or queue code>"/],
      ["governance/loan/_/baffle/loan.apply", { value: { enabled: true, response: {} }, schema: {} }, /take none of their own/],
      ["governance/_/_/route/loan.apply", { value: { enabled: true } }, /governance rules belong to an app/],
      [
        "technical/loan/prod/db",
        { value: { db: { $ref: "middleware/nowhere" } } },
        /reference to middleware\/nowhere, which does not exist/,
      ],
      ["technical/loan/prod/db", { value: { db: { $ref: "queue/x" } } }, /must be "middleware\/<name>" or "service\/<name>"/],
    ];
    for (const [path, body, reason] of cases) {
      const r = await call(base, "PUT", `/config/v1/items/${path}`, { role: "operator", body });
      assert.equal(r.status, 400, `${path}: ${r.body.message}`);
      assert.match(r.body.message, reason, path);
    }
    const badKind = await call(base, "PUT", "/config/v1/items/secret/_/_/x", { role: "operator", body: { value: 1 } });
    assert.equal(badKind.status, 400);
    assert.equal(await changeCount(), before, "nothing was written");
    assert.equal((await db.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 0);
  });

  test("an item schema with a keyword JSON Schema does not have, or a backreference under any sub-schema, is refused naming it", async () => {
    const before = await changeCount();
    const typo = await call(base, "PUT", "/config/v1/items/business/_/_/typo", {
      role: "operator",
      body: { schema: { type: "string", maxLenght: 3 }, value: "far too long", category: "custom" },
    });
    assert.equal(typo.status, 400);
    assert.match(typo.body.message, /unknown keyword: "maxLenght"/);
    const backreference = await call(base, "PUT", "/config/v1/items/business/_/_/backref", {
      role: "operator",
      body: { schema: { type: "object", patternProperties: { "^(a)\\1$": {} } }, value: { aa: 1 }, category: "custom" },
    });
    assert.equal(backreference.status, 400);
    assert.match(backreference.body.message, /^schema \/patternProperties: "\^\(a\)\\\\1\$" is not a pattern config-center can run/);
    assert.equal(await changeCount(), before, "nothing was written");
  });

  test("references to a missing field or through a cycle are refused, and a resource in use cannot be deleted", async () => {
    const mk = (name: string, config: Record<string, unknown>) =>
      call(base, "PUT", `/config/v1/resources/service/${name}`, { role: "admin", body: { type: "http", config } });
    assert.equal((await mk("gateway", { url: "http://gw" })).status, 200);
    assert.equal((await mk("auth", { upstream: { $ref: "service/gateway" } })).status, 200);
    const cycle = await mk("gateway", { url: "http://gw", via: { $ref: "service/auth" } });
    assert.equal(cycle.status, 400);
    assert.match(cycle.body.message, /references form a cycle: service\/gateway -> service\/auth -> service\/gateway/);
    const field = await call(base, "PUT", "/config/v1/items/technical/loan/prod/auth", {
      role: "operator",
      body: { value: { $ref: "service/auth#token" } },
    });
    assert.equal(field.status, 400);
    assert.match(field.body.message, /service\/auth has no field "token"/);
    // A field every object has (Object.prototype's) is not one of the resource's.
    const inherited = await call(base, "PUT", "/config/v1/items/technical/loan/prod/auth", {
      role: "operator",
      body: { value: { $ref: "service/auth#constructor" } },
    });
    assert.equal(inherited.status, 400, JSON.stringify(inherited.body));
    assert.match(inherited.body.message, /service\/auth has no field "constructor"/);
    const kind = await call(base, "PUT", "/config/v1/resources/constructor/x", { role: "admin", body: { type: "http" } });
    assert.equal(kind.status, 400, JSON.stringify(kind.body));
    assert.match(kind.body.message, /resource kind "constructor" must be one of/);
    await call(base, "PUT", "/config/v1/items/technical/loan/prod/auth", {
      role: "operator",
      body: { value: { $ref: "service/auth#upstream" } },
    });
    const inUse = await call(base, "DELETE", "/config/v1/resources/service/gateway", { role: "admin" });
    assert.equal(inUse.status, 409);
    assert.match(inUse.body.message, /still referenced by resource service\/auth/);
    const secretWithoutKind = await call(base, "PUT", "/config/v1/resources/queue/x", { role: "admin", body: { type: "http" } });
    assert.equal(secretWithoutKind.status, 400);
  });

  test("a dictionary imports from CSV in one versioned change; a bad row, a bad format or a 50 MB body are refused", async () => {
    const csv = "\uFEFFcode,name\n102100099996,ICBC\n103100000026,ABC\n\n105100000017,CCB\n";
    const imported = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes?category=bank-codes", {
      role: "operator",
      raw: csv,
      contentType: "text/csv",
    });
    assert.equal(imported.status, 200, imported.body.message);
    assert.equal(imported.body.entries, 3);
    assert.equal(imported.body.item.value[2].name, "CCB");
    const history = await call(base, "GET", "/config/v1/history/business/_/_/dict.bank-codes", { role: "viewer" });
    assert.deepEqual(
      history.body.changes.map((c: Json) => [c.action, c.comment]),
      [["import", "import of 3 entries"]],
    );

    const before = await changeCount();
    const badRow = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", {
      role: "operator",
      raw: "code,name\n1021,ICBC\n",
      contentType: "text/csv",
    });
    assert.equal(badRow.status, 400);
    assert.match(badRow.body.message, /CSV line 2 \(the header is line 1\): \/code must match pattern/);
    const ragged = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", {
      role: "operator",
      raw: "code,name\n1,2,3\n",
      contentType: "text/csv",
    });
    assert.equal(ragged.status, 400);
    assert.match(ragged.body.message, /the CSV does not parse/);
    const notArray = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", { role: "operator", body: { code: "x" } });
    assert.equal(notArray.status, 400);
    const huge = await call(base, "POST", "/config/v1/import/_/_/dict.huge", {
      role: "operator",
      raw: `code,name\n${"1,x\n".repeat(13_000_000)}`,
      contentType: "text/csv",
    });
    assert.equal(huge.status, 413);
    assert.equal(await changeCount(), before);
    const viewer = await call(base, "POST", "/config/v1/import/_/_/dict.bank-codes", { role: "viewer", raw: csv, contentType: "text/csv" });
    assert.equal(viewer.status, 403);
  });

  test("text (CSV or plain) sent to any route but the import is 415 naming the type and what to send, not a schema error; nothing written", async () => {
    const before = await changeCount();
    for (const [method, path, contentType] of [
      ["PUT", "/config/v1/items/business/_/_/text.sent", "text/plain"],
      ["PUT", "/config/v1/items/business/_/_/text.sent", "text/csv; charset=utf-8"],
      ["PUT", "/config/v1/apps/text-app", "text/plain"],
    ] as const) {
      const r = await call(base, method, path, { role: "admin", raw: '{"value":{"a":1}}', contentType });
      assert.equal(r.status, 415, `${method} ${path} as ${contentType}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(r.body, {
        error: "unsupported_media_type",
        message: `content-type ${JSON.stringify(contentType)} is not accepted: send the body as JSON (content-type: application/json)`,
      });
    }
    assert.equal(await changeCount(), before);
    assert.equal((await call(base, "GET", "/config/v1/items/business/_/_/text.sent", { role: "viewer" })).status, 404);
  });

  test("a dictionary in GBK (Excel's Chinese export) imports in its charset, never garbled; a header naming a column twice is refused", async () => {
    // "中国" in GBK: the bytes an Excel CSV export carries.
    const gbk = new Blob(["code,name\n102100099996,", new Uint8Array([0xd6, 0xd0, 0xb9, 0xfa]), "\n"]);
    const path = "/config/v1/import/_/_/dict.gbk-banks?category=bank-codes";
    const before = await changeCount();
    const unlabelled = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv" });
    assert.equal(unlabelled.status, 400);
    assert.match(unlabelled.body.message, /not valid utf-8.*charset=gbk/);
    const unknown = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv; charset=x-klingon" });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.message, /charset "x-klingon"/);
    const twice = await call(base, "POST", path, { role: "operator", raw: "code,name,code\n1,a,2\n", contentType: "text/csv" });
    assert.equal(twice.status, 400);
    assert.match(twice.body.message, /column "code" twice/);
    assert.equal(await changeCount(), before);
    const labelled = await call(base, "POST", path, { role: "operator", raw: gbk, contentType: "text/csv; charset=GBK" });
    assert.equal(labelled.status, 200, labelled.body.message);
    assert.equal(labelled.body.item.value[0].name, "中国");
  });

  test("bytes GBK does not define are refused naming their line, not imported as private-use characters", async () => {
    const before = await changeCount();
    const undefinedBytes = new Blob(["code,name\n102100099996,ok\n102100099997,", new Uint8Array([0xff, 0xff]), "\n"]);
    const r = await call(base, "POST", "/config/v1/import/_/_/dict.gbk-undefined?category=bank-codes", {
      role: "operator",
      raw: undefinedBytes,
      contentType: "text/csv; charset=gbk",
    });
    assert.equal(r.status, 400);
    // Node 20's GBK decoder reads 0xFF as a private-use character, Node 24's refuses it: the same answer either way.
    assert.match(r.body.message, /^the dictionary is not valid gbk: CSV line 3 \(the header is line 1\) has bytes gbk does not define/);
    assert.equal(await changeCount(), before, "nothing was written");
  });

  test("a JSON dictionary sent as text with bytes that are not UTF-8 (CESU-8's encoded surrogate) is refused naming its line, not a CSV line", async () => {
    const before = await changeCount();
    const cesu = new Blob(['[{"code":"a","name":"x"},\n{"code":"b","name":"', new Uint8Array([0xed, 0xa0, 0x80]), '"}]']);
    const r = await call(base, "POST", "/config/v1/import/_/_/dict.cesu?format=json", {
      role: "operator",
      raw: cesu,
      contentType: "text/plain",
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.message, "the dictionary is not valid utf-8: line 2 has bytes utf-8 does not define");
    assert.equal(await changeCount(), before, "nothing was written");
  });

  test("a dictionary naming one code twice is refused naming the code and both places; errors name lines and positions as the file shows them", async () => {
    const before = await changeCount();
    const csv = "code,name\n102100099996,ICBC\n\n103100000026,ABC\n102100099996,ICBC again\n";
    const twice = await call(base, "POST", "/config/v1/import/_/_/dict.dup?category=bank-codes", {
      role: "operator",
      raw: csv,
      contentType: "text/csv",
    });
    assert.equal(twice.status, 400);
    assert.equal(twice.body.message, 'code "102100099996" appears twice: CSV lines 2 and 5 (the header is line 1)');
    const jsonTwice = await call(base, "POST", "/config/v1/import/_/_/dict.dup?category=dictionary", {
      role: "operator",
      body: [
        { code: "a", name: "x" },
        { code: "b", name: "y" },
        { code: "a", name: "z" },
      ],
    });
    assert.equal(jsonTwice.status, 400);
    assert.equal(jsonTwice.body.message, 'code "a" appears twice: JSON array entries 1 and 3 (counting from 1)');
    // A row spanning two lines (a quoted line break) is named by its first line.
    const badCsv = await call(base, "POST", "/config/v1/import/_/_/dict.dup?category=bank-codes", {
      role: "operator",
      raw: 'code,name\n102100099996,"Industrial and\nCommercial"\n\n1021,short\n',
      contentType: "text/csv",
    });
    assert.equal(badCsv.status, 400);
    assert.match(badCsv.body.message, /: CSV line 5 \(the header is line 1\): \/code must match pattern/);
    const badJson = await call(base, "POST", "/config/v1/import/_/_/dict.dup?category=bank-codes", {
      role: "operator",
      body: [
        { code: "102100099996", name: "x" },
        { code: "1", name: "y" },
      ],
    });
    assert.equal(badJson.status, 400);
    assert.match(badJson.body.message, /: JSON array entry 2 \(counting from 1\): \/code must match pattern/);
    const notObject = await call(base, "POST", "/config/v1/import/_/_/dict.dup", { role: "operator", body: [{ code: "a", name: "x" }, 7] });
    assert.equal(notObject.status, 400);
    assert.match(notObject.body.message, /JSON array entry 2 \(counting from 1\) is not an object/);
    const rpc = await fetch(`${base}/ops.v1.ConfigCenterService/ImportDictionary`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.operator}` },
      body: JSON.stringify({ ref: { kind: "business", key: "dict.dup" }, format: "csv", content: csv, category: "bank-codes" }),
    });
    assert.equal(rpc.status, 400);
    assert.match(((await rpc.json()) as { message: string }).message, /appears twice: CSV lines 2 and 5/);
    assert.equal(await changeCount(), before, "nothing was written");
  });

  test("a CSV (a spreadsheet's export) fills integer, number and boolean fields; an empty cell is an absent field; a cell that is not its type is refused naming it", async () => {
    const csv = (path: string, raw: string) =>
      call(base, "POST", `/config/v1/import/_/_/${path}`, { role: "operator", raw, contentType: "text/csv" });
    const dict = await csv(
      "dict.typed?category=dictionary",
      "code,name,sort,enabled\n01,ID card,1,TRUE\n02,Passport,2,false\n03,Other,,\n",
    );
    assert.equal(dict.status, 200, dict.body.message);
    assert.deepEqual(dict.body.item.value, [
      { code: "01", name: "ID card", sort: 1, enabled: true },
      { code: "02", name: "Passport", sort: 2, enabled: false },
      { code: "03", name: "Other" },
    ]);
    const bins = await csv("dict.bins?category=card-bin", "bin,bank,cardType,length\n622202,ICBC,debit,19\n");
    assert.equal(bins.status, 200, bins.body.message);
    assert.deepEqual(bins.body.item.value, [{ bin: "622202", bank: "ICBC", cardType: "debit", length: 19 }]);
    const segments = await csv("dict.segments?category=phone-segment", "segment,carrier,province\n1380000,CMCC,\n");
    assert.equal(segments.status, 200, segments.body.message);
    assert.deepEqual(segments.body.item.value, [{ segment: "1380000", carrier: "CMCC" }]);
    // An item's own schema types its columns too.
    const own = await call(base, "PUT", "/config/v1/items/business/_/_/dict.rates", {
      role: "operator",
      body: { value: [], schema: { type: "array", items: { type: "object", properties: { rate: { type: "number" } } } } },
    });
    assert.equal(own.status, 200, own.body.message);
    const rates = await csv("dict.rates", "term,rate\n12,0.35\n");
    assert.equal(rates.status, 200, rates.body.message);
    assert.deepEqual(rates.body.item.value, [{ term: "12", rate: 0.35 }]);
    // Quoted or not, spaces around a number are not part of it; a column that may also be null converts too.
    const nullable = await call(base, "PUT", "/config/v1/items/business/_/_/dict.nullable", {
      role: "operator",
      body: { value: [], schema: { type: "array", items: { type: "object", properties: { n: { type: ["integer", "null"] } } } } },
    });
    assert.equal(nullable.status, 200, nullable.body.message);
    const spaced = await csv("dict.nullable", 'k,n\na," 12 "\nb, 7\n');
    assert.equal(spaced.status, 200, spaced.body.message);
    assert.deepEqual(spaced.body.item.value, [
      { k: "a", n: 12 },
      { k: "b", n: 7 },
    ]);

    const before = await changeCount();
    const refusals: Array<[string, string]> = [
      ["code,name,sort\n01,A,1\n02,B,abc\n", 'CSV line 3 (the header is line 1): sort "abc" is not an integer'],
      ["code,name,sort\n01,A,1.5\n", 'CSV line 2 (the header is line 1): sort "1.5" is not an integer'],
      ["code,name,sort\n01,A,0x1A\n", 'CSV line 2 (the header is line 1): sort "0x1A" is not an integer'],
      ["code,name,enabled\n01,A,yes\n", 'CSV line 2 (the header is line 1): enabled "yes" is not a boolean (true or false)'],
    ];
    for (const [raw, message] of refusals) {
      const refused = await csv("dict.typed?category=dictionary", raw);
      assert.equal(refused.status, 400);
      assert.equal(refused.body.message, message);
    }
    const missing = await csv("dict.typed?category=dictionary", "code,name\n01,\n");
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /CSV line 2 \(the header is line 1\): \/ must have required property 'name'/);
    const badRate = await csv("dict.rates", "term,rate\n12,35%\n");
    assert.equal(badRate.body.message, 'CSV line 2 (the header is line 1): rate "35%" is not a number');
    // A number JSON could not give back as written is refused, not stored rounded (12345678901234567000 before).
    for (const [rate, why] of [
      ["12345678901234567890", "is beyond ±2^53, past which digits would be lost"],
      ["1.0e-400", "is too small to be kept (it would become 0)"],
    ])
      assert.equal(
        (await csv("dict.rates", `term,rate\n12,${rate}\n`)).body.message,
        `CSV line 2 (the header is line 1): rate "${rate}" ${why}`,
      );
    // JSON carries its own types: a string is not converted.
    const json = await call(base, "POST", "/config/v1/import/_/_/dict.typed?format=json", {
      role: "operator",
      body: [{ code: "01", name: "A", sort: "1" }],
    });
    assert.equal(json.status, 400);
    assert.match(json.body.message, /JSON array entry 1 \(counting from 1\): \/sort must be integer/);
    assert.equal(await changeCount(), before, "nothing was written");
  });

  test("a body field of the wrong type is refused naming it, never converted: a null 'enabled' does not switch an app off", async () => {
    assert.equal((await call(base, "PUT", "/config/v1/apps/typed-app", { role: "admin", body: { description: "d" } })).status, 200);
    for (const [body, reason] of [
      [{ enabled: null }, "body/enabled must be boolean"],
      [{ enabled: 0 }, "body/enabled must be boolean"],
      [{ environments: "uat" }, "body/environments must be array"],
      [{ description: ["d"] }, "body/description must be string"],
    ] as const) {
      const r = await call(base, "PUT", "/config/v1/apps/typed-app", { role: "admin", body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.message, reason, JSON.stringify(body));
    }
    const app = await call(base, "GET", "/config/v1/apps/typed-app", { role: "viewer" });
    assert.equal(app.body.enabled, true, "still enabled");
    // The query string is text on the wire: its numbers and booleans are still read as such.
    assert.equal((await call(base, "GET", "/config/v1/apps/typed-app/instances?limit=5", { role: "viewer" })).status, 200);
  });

  test("a lone surrogate anywhere in an item's body is refused naming the field, not with PostgreSQL's json error; nothing written", async () => {
    const before = await changeCount();
    const cases: Array<[string, string, string]> = [
      ["business/_/_/lone", `{"value":{"limits":[1,"a${lone}"]}}`, loneReason("value/limits/1")],
      ["business/_/_/lone", `{"value":{"a${lone}":1}}`, "body/value has a key containing a lone surrogate (not valid Unicode)"],
      ["business/_/_/lone", `{"value":1,"schema":{"description":"${lone}"}}`, loneReason("schema/description")],
      ["business/_/_/lone", `{"value":1,"description":"d${lone}"}`, loneReason("description")],
      ["technical/loan/prod/lone", `{"value":{"url":"x"},"comment":"why ${lone}"}`, loneReason("comment")],
      ["governance/loan/_/route/loan.apply", `{"value":{"enabled":true},"category":"${lone}"}`, loneReason("category")],
    ];
    for (const [path, raw, reason] of cases) {
      const r = await call(base, "PUT", `/config/v1/items/${path}`, { role: "operator", raw });
      assert.equal(r.status, 400, `${path} ${raw}: ${r.body.message}`);
      assert.equal(r.body.message, reason, raw);
    }
    assert.equal(await changeCount(), before, "nothing was written");
    assert.equal((await db.query("SELECT count(*)::int AS n FROM items WHERE key IN ('lone', 'route/loan.apply')")).rows[0].n, 0);
  });

  test("a value nested past 64 levels (which Connect could not read back) is refused over REST and Connect, and a __proto__ key over REST; nothing written", async () => {
    const before = await changeCount();
    const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
    const cases: Array<[string, string]> = [
      // 64 arrays inside `value` (65 levels of the body): Connect's reads stop at 100, so GetItem, ListItems
      // and GetMetadata answered 500 for a value stored 101 deep; 10,000 deep the write itself was a 500.
      [`{"value":${nested(64)}}`, "body/value/0/… nests deeper than 64 levels"],
      [`{"value":${nested(10_000)}}`, "body/value/0/… nests deeper than 64 levels"],
    ];
    for (const [raw, reason] of cases) {
      const r = await call(base, "PUT", "/config/v1/items/business/_/_/deep", { role: "operator", raw });
      assert.equal(r.status, 400, `${raw.slice(0, 80)}: ${r.body.message}`);
      assert.equal(r.body.message, reason);
    }
    const fine = await call(base, "PUT", "/config/v1/items/business/_/_/deep", { role: "operator", raw: `{"value":${nested(60)}}` });
    assert.equal(fine.status, 200, fine.body.message);
    const rpc = await fetch(`${base}/ops.v1.ConfigCenterService/GetItem`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.viewer}`, "content-type": "application/json" },
      body: JSON.stringify({ ref: { kind: "business", key: "deep" } }),
    });
    assert.equal(rpc.status, 200, "what REST stores, Connect reads back");
    // Over Connect the same bound: 96 levels were stored with a 500 answered, and every read of the app then failed.
    const putOverConnect = (depth: number) =>
      fetch(`${base}/ops.v1.ConfigCenterService/PutItem`, {
        method: "POST",
        headers: { authorization: `Bearer ${keys.operator}`, "content-type": "application/json" },
        body: `{"ref":{"kind":"business","key":"deep-rpc"},"value":${nested(depth)}}`,
      });
    for (const depth of [64, 96]) {
      const refused = await putOverConnect(depth);
      assert.equal(refused.status, 400, `${depth} deep over Connect`);
      assert.deepEqual(await refused.json(), { code: "invalid_argument", message: "value/0/0/… nests deeper than 64 levels" });
    }
    // Past Connect's own bound its decoder refuses first, in its words.
    const decoderRefused = await putOverConnect(10_000);
    assert.equal(decoderRefused.status, 400);
    assert.match(((await decoderRefused.json()) as { message: string }).message, /maximum recursion depth of 100 reached/);
    assert.equal((await putOverConnect(60)).status, 200);
    const proto = await call(base, "PUT", "/config/v1/items/business/_/_/proto", {
      role: "operator",
      raw: '{"value":{"a":{"__proto__":{"x":1}}}}',
    });
    assert.equal(proto.status, 400);
    assert.equal(proto.body.error, "invalid_json");
    assert.equal(await changeCount(), before + 2, "only the 60-level values were written");
  });

  test("a lone surrogate anywhere in a resource's body is refused naming the field; nothing written, no secret sealed as U+FFFD", async () => {
    const before = await changeCount();
    const cases: Array<[string, string]> = [
      [`{"type":"postgresql","config":{"hosts":["db1","${lone}"]}}`, loneReason("config/hosts/1")],
      [`{"type":"postgresql","config":{"${lone}":"x"}}`, "body/config has a key containing a lone surrogate (not valid Unicode)"],
      [`{"type":"postgresql","secrets":{"password":"pw-${lone}"}}`, loneReason("secrets/password")],
      [`{"type":"postgresql","description":"${lone}"}`, loneReason("description")],
      [`{"type":"postgresql","comment":"${lone}"}`, loneReason("comment")],
    ];
    for (const [raw, reason] of cases) {
      const r = await call(base, "PUT", "/config/v1/resources/middleware/lone-db", { role: "admin", raw });
      assert.equal(r.status, 400, `${raw}: ${r.body.message}`);
      assert.equal(r.body.message, reason, raw);
    }
    assert.equal(await changeCount(), before, "nothing was written");
    assert.equal((await call(base, "GET", "/config/v1/resources/middleware/lone-db", { role: "viewer" })).status, 404);
  });

  test("an app's fields with a lone surrogate are refused naming the field, not stored as U+FFFD", async () => {
    const created = await call(base, "PUT", "/config/v1/apps/lone-app", {
      role: "admin",
      body: { systemDomain: "loans", description: "kept" },
    });
    assert.equal(created.status, 200, created.body.message);
    const cases: Array<[string, string]> = [
      [`{"systemDomain":"loans ${lone}"}`, loneReason("systemDomain")],
      [`{"description":"d ${lone}"}`, loneReason("description")],
      [`{"secret":"new-secret-${lone}"}`, loneReason("secret")],
      [`{"environments":["uat","${lone}"]}`, loneReason("environments/1")],
    ];
    for (const [raw, reason] of cases) {
      const r = await call(base, "PUT", "/config/v1/apps/lone-app", { role: "admin", raw });
      assert.equal(r.status, 400, `${raw}: ${r.body.message}`);
      assert.equal(r.body.message, reason, raw);
    }
    const app = await call(base, "GET", "/config/v1/apps/lone-app", { role: "viewer" });
    assert.deepEqual([app.body.systemDomain, app.body.description, app.body.revision], ["loans", "kept", created.body.revision]);
  });

  test("every other write route refuses a lone surrogate naming the field, never storing U+FFFD nor answering PostgreSQL's error", async () => {
    const kept = await call(base, "PUT", "/config/v1/items/business/_/_/lone.kept", { role: "operator", body: { value: 1 } });
    assert.equal(kept.status, 200, kept.body.message);
    const token = (await call(base, "POST", "/config/v1/token", { body: loan })).body.token as string;
    const before = await changeCount();
    const item = "business/_/_/lone.kept";
    const cases: Array<[string, string, { role?: "operator" | "admin"; token?: string }, string, string]> = [
      ["POST", "/config/v1/token", {}, `{"appId":"lone-claim","secret":"secret-${lone}"}`, loneReason("secret")],
      ["DELETE", `/config/v1/items/${item}`, { role: "operator" }, `{"comment":"${lone}"}`, loneReason("comment")],
      ["POST", `/config/v1/rollback/${item}`, { role: "operator" }, `{"toVersion":1,"comment":"${lone}"}`, loneReason("comment")],
      [
        "POST",
        `/config/v1/gray/${item}`,
        { role: "operator" },
        `{"value":["${lone}"],"selector":{"labels":{"z":"a"}}}`,
        loneReason("value/0"),
      ],
      [
        "POST",
        `/config/v1/gray/${item}`,
        { role: "operator" },
        `{"value":2,"selector":{"labels":{"z":"${lone}"}}}`,
        loneReason("selector/labels/z"),
      ],
      [
        "POST",
        `/config/v1/gray/${item}`,
        { role: "operator" },
        `{"value":2,"selector":{"labels":{"z":"a"}},"comment":"${lone}"}`,
        loneReason("comment"),
      ],
      ["POST", `/config/v1/gray-release/${item}`, { role: "operator" }, `{"comment":"${lone}"}`, loneReason("comment")],
      ["POST", `/config/v1/gray-abandon/${item}`, { role: "operator" }, `{"comment":"${lone}"}`, loneReason("comment")],
      [
        "POST",
        "/config/v1/import/_/_/dict.lone",
        { role: "operator" },
        `[{"code":"a","name":"x"},{"code":"b","name":"${lone}"}]`,
        loneReason("1/name"),
      ],
      ["PUT", "/config/v1/locks/lone-lock", { role: "admin" }, `{"apps":["loan"],"description":"${lone}"}`, loneReason("description")],
      ["PUT", "/config/v1/sequences/lone-seq", { role: "admin" }, `{"pattern":"LN{seq:6}${lone}"}`, loneReason("pattern")],
      [
        "PUT",
        "/config/v1/sequences/lone-seq",
        { role: "admin" },
        `{"pattern":"LN{seq:6}","description":"${lone}"}`,
        loneReason("description"),
      ],
      ["POST", "/config/v1/locks/acquire", { token }, `{"name":"lone-held","holder":"pod-${lone}","leaseMs":10000}`, loneReason("holder")],
    ];
    for (const [method, path, as, raw, reason] of cases) {
      const r = await call(base, method, path, { ...as, raw });
      assert.equal(r.status, 400, `${method} ${path} ${raw}: ${r.body.message}`);
      assert.equal(r.body.message, reason, `${method} ${path} ${raw}`);
    }
    // The same dictionary as text (format=json) is read by the import itself, which names the entry as the file shows it.
    const asText = await call(base, "POST", "/config/v1/import/_/_/dict.lone?format=json", {
      role: "operator",
      raw: `[{"code":"a","name":"${lone}"}]`,
      contentType: "text/plain",
    });
    assert.equal(asText.status, 400);
    assert.equal(asText.body.message, `JSON array entry 1 (counting from 1): ${entryLoneReason("name")}`);
    // So are a NUL (JSON's "\u0000": PostgreSQL's own message before) and a __proto__ key (stored before).
    for (const [raw, reason] of [
      [
        '[{"code":"a","name":"x"},{"code":"b","name":"\\u0000"}]',
        "JSON array entry 2 (counting from 1): name must not contain NUL (\\u0000)",
      ],
      [
        '[{"code":"a","name":"x"},{"code":"b","__proto__":{"polluted":1}}]',
        "JSON array entry 2 (counting from 1): value has a key __proto__, which is refused (it would alter objects' prototypes)",
      ],
    ]) {
      const r = await call(base, "POST", "/config/v1/import/_/_/dict.lone?format=json", {
        role: "operator",
        raw,
        contentType: "text/plain",
      });
      assert.equal(r.status, 400, raw);
      assert.equal(r.body.message, reason, raw);
    }
    assert.equal(await changeCount(), before, "nothing was written");
    assert.equal((await call(base, "GET", "/config/v1/apps/lone-claim", { role: "viewer" })).status, 404, "no app claimed");
    const locks = (await call(base, "GET", "/config/v1/locks", { role: "viewer" })).body.locks as Json[];
    assert.deepEqual(
      locks.filter((l) => l.name.startsWith("lone-")),
      [],
    );
    const sequences = (await call(base, "GET", "/config/v1/sequences", { role: "viewer" })).body.sequences as Json[];
    assert.deepEqual(
      sequences.filter((q) => q.name === "lone-seq"),
      [],
    );
  });

  test("a flood of heartbeats is refused and then hung up on; other instances go on receiving changes", async () => {
    const flooder = await Instance.start(base, loan, { hostName: "flooder" });
    const calm = await Instance.start(base, loan, { hostName: "calm" });
    for (let n = 0; n < 200 && !flooder.closed; n++) flooder.send({ t: "ping" });
    const closed = await flooder.whenClosed();
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /more than 5 messages per second, sustained/);
    assert.ok(flooder.inbox.some((m) => m.t === "error" && /^rate-limited/.test(m.reason)));
    calm.send("not json");
    await calm.next("a refusal", (m) => m.t === "error" && m.reason === "malformed: not JSON");
    calm.send({ t: "ack", version: -1 });
    await calm.next("a refusal", (m) => m.t === "error" && /ack needs a non-negative integer version/.test(m.reason));
    await call(base, "PUT", "/config/v1/items/technical/loan/_/after-flood", { role: "operator", body: { value: true } });
    await calm.until("technical", "after-flood", (c) => c.value === true);
    calm.close();
  });

  test("a socket message over SOCKET_MAX_MESSAGE_BYTES is answered with the reason, then the socket closes (1009); it is counted", async () => {
    const talker = await Instance.start(base, loan, { hostName: "big-talker" });
    talker.send({ t: "ping", padding: "x".repeat(200_000) });
    assert.deepEqual(await talker.whenClosed(), { code: 1009, reason: "message over 65536 bytes" });
    const error = talker.inbox.find((m) => m.t === "error");
    assert.equal(error?.reason, "too-large: a message over 65536 bytes (SOCKET_MAX_MESSAGE_BYTES); closing (1009)");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /config_center_socket_refusals_total\{reason="too-large",service="config-center"\} 1\b/);
  });

  test("an acknowledgement of a version never sent is refused and ignored: the recorded version stays the real one", async () => {
    const i = await Instance.start(base, loan, { hostName: "acker" });
    const set = await call(base, "PUT", "/config/v1/items/technical/loan/_/ack-check", { role: "operator", body: { value: 1 } });
    await i.until("technical", "ack-check", (c) => c.value === 1);
    const acked = async () =>
      (await db.query("SELECT acked_version, last_heartbeat_at FROM instances WHERE id = $1", [i.instanceId])).rows[0] as Json;
    const recorded = await eventually("the acknowledgement recorded", async () => {
      const row = await acked();
      return row.acked_version === set.body.version ? row : undefined;
    });
    i.send({ t: "ack", version: set.body.version + 1_000 });
    const refusal = await i.next("a refusal", (m) => m.t === "error" && /^ack-ahead: /.test(m.reason));
    assert.equal(
      refusal.reason,
      `ack-ahead: ack of version ${set.body.version + 1_000}, but the last version sent to this instance is ${set.body.version}; ignored`,
    );
    // Heartbeats go on; once one is written after the refused ack, the recorded version is still the real one.
    const later = await eventually("a heartbeat written after the refusal", async () => {
      const row = await acked();
      return row.last_heartbeat_at > recorded.last_heartbeat_at ? row : undefined;
    });
    assert.equal(later.acked_version, set.body.version);
    i.close();
  });

  test("a baffle's sandbox script is loaded when written: one that does not parse is refused naming its error and position", async () => {
    const before = await changeCount();
    const path = "/config/v1/items/governance/loan/_/baffle/loan.apply";
    const broken = await call(base, "PUT", path, {
      role: "operator",
      body: { value: { enabled: true, response: { status: 200 }, script: "function respond(req) {\n  return { body: req.amount + };\n}" } },
    });
    assert.equal(broken.status, 400);
    assert.match(
      broken.body.message,
      /^the script of item\/governance\/loan\/\*\/baffle\/loan\.apply does not load at line 2, column \d+: SyntaxError: /,
    );
    assert.equal(broken.body.details.line, 2);
    const failing = await call(base, "PUT", path, {
      role: "operator",
      body: { value: { enabled: true, response: { status: 200 }, script: "throw new Error('not ready');" } },
    });
    assert.equal(failing.status, 400);
    assert.match(failing.body.message, /does not load at line 1, column \d+: Error: not ready$/);
    assert.equal(await changeCount(), before, "nothing was written");
    const fine = await call(base, "PUT", path, {
      role: "operator",
      body: { value: { enabled: true, response: { status: 200 }, script: "function respond(req) {\n  return { body: req.amount };\n}" } },
    });
    assert.equal(fine.status, 200, fine.body.message);
  });

  test("a flood of baffle scripts that never end holds no database connection: registrations and admin calls stay fast", async () => {
    const flood = Array.from({ length: 20 }, (_, i) =>
      call(base, "PUT", `/config/v1/items/governance/loan/uat/baffle/flood${i}`, {
        role: "operator",
        body: { value: { enabled: true, response: { status: 200 }, script: "while(true){}" } },
      }),
    );
    const started = Date.now();
    const i = await Instance.start(base, loan, { env: "uat" });
    const apps = await call(base, "GET", "/config/v1/apps", { role: "admin" });
    const took = Date.now() - started;
    assert.equal(apps.status, 200, apps.body.message);
    assert.ok(took < 3_000, `a registration and an admin call took ${took} ms during the flood`);
    const answers = await Promise.all(flood);
    for (const a of answers) {
      assert.ok(a.status === 400 || a.status === 429, `${a.status} ${a.body.message}`);
      if (a.status === 429) assert.equal(a.headers.get("retry-after"), "1");
    }
    assert.match(answers.find((a) => a.status === 400)!.body.message, /does not load/);
    i.close();
  });

  test("a baffle's response headers that an app could not send are refused naming the header, nothing written", async () => {
    const before = await changeCount();
    const path = "/config/v1/items/governance/loan/_/baffle/loan.quote";
    const baffle = (headers: Record<string, string>) =>
      call(base, "PUT", path, { role: "operator", body: { value: { enabled: true, response: { status: 200, headers, body: "ok" } } } });
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ "bad header": "2" }, /\/response\/headers property name "bad header" must match pattern/],
      [{ "x-ok": "1", "x-split\r\nset-cookie": "a" }, /property name "x-split\\r\\nset-cookie" must match pattern/],
      [{ "x-injected": "1\r\nset-cookie: session=stolen" }, /\/response\/headers\/x-injected must match pattern/],
      [{ "x-nul": "a\u0000b" }, /\/response\/headers\/x-nul must not contain NUL/],
      [{ "x-bell": "a\u0007b" }, /\/response\/headers\/x-bell must match pattern/],
      [{ "x-wide": "\u4e2d\u6587" }, /\/response\/headers\/x-wide must match pattern/],
      [{ "Content-Length": "9" }, /property name "Content-Length" is not allowed/],
    ];
    for (const [headers, reason] of cases) {
      const r = await baffle(headers);
      assert.equal(r.status, 400, JSON.stringify(headers));
      assert.match(r.body.message, reason, JSON.stringify(headers));
    }
    assert.equal(await changeCount(), before, "nothing was written");
    const fine = await baffle({ "x-mock": "yes", "Content-Type": "text/plain; charset=utf-8", "x-tabbed": "a\tb" });
    assert.equal(fine.status, 200, fine.body.message);
  });

  test("without Redis, business parameters come from config-center; large ones are fetched rather than pushed", async () => {
    const i = await Instance.start(base, loan);
    const big = Array.from({ length: 4000 }, (_, n) => ({ code: String(n).padStart(6, "0"), name: `entry ${n}` }));
    await call(base, "PUT", "/config/v1/items/business/_/_/dict.big", { role: "operator", body: { value: big, category: "dictionary" } });
    const pushed = await i.until("business", "dict.big", (c) => c.fetch === true);
    assert.equal(pushed.value, undefined);
    const read = await call(base, "POST", `/config/v1/instances/${i.instanceId}/business`, {
      token: i.token,
      body: { keys: ["dict.big"] },
    });
    assert.equal(read.body.values[0].value.length, 4000);
    i.close();
  });

  test("a socket handshake without a valid token, or for another app's instance, is refused", async () => {
    const i = await Instance.start(base, loan);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${base.replace("http", "ws")}/config/v1/instances/${i.instanceId}/socket`, {
          headers: { "x-config-token": "cct_forged" },
        });
        ws.once("open", resolve);
        ws.once("unexpected-response", (_q, res) => reject(new Error(String(res.statusCode))));
      }),
      /401/,
    );
    i.close();
  });

  test("on shutdown every socket is closed with going away, so instances reconnect elsewhere at once", async () => {
    const i = await Instance.start(base, loan);
    await env.centers[0]!.close();
    assert.deepEqual(await i.whenClosed(), { code: 1001, reason: "config-center is shutting down; reconnect" });
  });
});

describe("a body over its limit is refused (413) naming the limit that applied", () => {
  let env: Awaited<ReturnType<typeof startCenters>>;
  let base: string;
  before(async () => {
    env = await startCenters(1, { redis: false, env: { BODY_LIMIT_BYTES: "65536", IMPORT_BODY_LIMIT_BYTES: "262144" } });
    base = env.urls[0]!;
  });
  after(async () => env.close());

  const rows = (n: number) => `code,name\n${Array.from({ length: n }, (_, i) => `${String(i).padStart(8, "0")},entry ${i}`).join("\n")}\n`;

  test("IMPORT_BODY_LIMIT_BYTES on the dictionary import, BODY_LIMIT_BYTES on every other route and RPC", async () => {
    const csv = rows(6_000); // about 120 kB: over BODY_LIMIT_BYTES, within IMPORT_BODY_LIMIT_BYTES
    const imported = await call(base, "POST", "/config/v1/import/_/_/dict.mid", { role: "operator", raw: csv, contentType: "text/csv" });
    assert.equal(imported.status, 200, imported.body.message);
    const overImport = await call(base, "POST", "/config/v1/import/_/_/dict.big", {
      role: "operator",
      raw: rows(20_000),
      contentType: "text/csv",
    });
    assert.equal(overImport.status, 413);
    assert.equal(overImport.body.message, "request body exceeds 262144 bytes (IMPORT_BODY_LIMIT_BYTES)");
    // The import's larger limit is its own: CSV sent to another route gets the general one.
    const csvElsewhere = await call(base, "PUT", "/config/v1/items/business/_/_/dict.mid", {
      role: "operator",
      raw: csv,
      contentType: "text/csv",
    });
    assert.equal(csvElsewhere.status, 413);
    assert.equal(csvElsewhere.body.message, "request body exceeds 65536 bytes (BODY_LIMIT_BYTES)");
    const jsonElsewhere = await call(base, "PUT", "/config/v1/items/business/_/_/big", {
      role: "operator",
      body: { value: "x".repeat(100_000) },
    });
    assert.equal(jsonElsewhere.status, 413);
    assert.equal(jsonElsewhere.body.message, "request body exceeds 65536 bytes (BODY_LIMIT_BYTES)");
    const rpc = await fetch(`${base}/ops.v1.ConfigCenterService/ImportDictionary`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.operator}` },
      body: JSON.stringify({ ref: { kind: "business", key: "dict.rpc" }, format: "csv", content: csv }),
    });
    assert.equal(rpc.status, 413);
    assert.deepEqual(await rpc.json(), { code: "resource_exhausted", message: "request body exceeds 65536 bytes (BODY_LIMIT_BYTES)" });
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileExtractor, ExtractionError, type HttpExchange, validateRule } from "../src/rules/index.js";

const exchange = (over: Partial<HttpExchange>): HttpExchange => ({
  method: "POST",
  path: "/notify",
  query: "",
  headers: {},
  body: Buffer.alloc(0),
  ...over,
});

const read = (kind: "json" | "query" | "form" | "header" | "xml", expr: string, x: HttpExchange, from?: "request" | "response") =>
  compileExtractor({ kind, expr, from }, undefined)(x);

describe("declarative extractors", () => {
  test("JSON path reads nested keys, array indexes and numbers", () => {
    const body = Buffer.from(JSON.stringify({ data: { items: [{ id: 42 }], out_trade_no: "T-1" } }));
    assert.equal(read("json", "$.data.out_trade_no", exchange({ body })), "T-1");
    assert.equal(read("json", "data.items[0].id", exchange({ body })), "42");
  });

  test("form field, query parameter and header", () => {
    assert.equal(read("form", "out_trade_no", exchange({ body: Buffer.from("a=1&out_trade_no=F%2D9&sign=x") })), "F-9");
    assert.equal(read("query", "order", exchange({ query: "order=Q7&x=1" })), "Q7");
    assert.equal(read("header", "X-Order-Id", exchange({ headers: { "x-order-id": "H3" } })), "H3");
  });

  test("XML element path reads WeChat-style bodies, CDATA included", () => {
    const body = Buffer.from("<xml><return_code><![CDATA[SUCCESS]]></return_code><out_trade_no><![CDATA[W-5]]></out_trade_no></xml>");
    assert.equal(read("xml", "xml.out_trade_no", exchange({ body })), "W-5");
  });

  test("a UTF-8 byte order mark before a JSON, form or XML body is skipped (it made the callback extraction_failed)", () => {
    const bom = (text: string) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    assert.equal(read("json", "orderNo", exchange({ body: bom('{"orderNo":"SIT-1001"}') })), "SIT-1001");
    assert.equal(read("form", "out_trade_no", exchange({ body: bom("out_trade_no=SIT-2001&sign=x") })), "SIT-2001");
    assert.equal(read("xml", "xml.id", exchange({ body: bom("<xml><id>SIT-3001</id></xml>") })), "SIT-3001");
  });

  test("an id's length is counted in characters as the registrations API counts them: 256 emoji pass, 257 do not", () => {
    const id = (n: number) => Buffer.from(JSON.stringify({ orderNo: "😀".repeat(n) }));
    assert.equal(read("json", "orderNo", exchange({ body: id(256) })), "😀".repeat(256));
    assert.throws(() => read("json", "orderNo", exchange({ body: id(257) })), /id longer than 256 characters/);
  });

  test("the response is read when the rule says so (figure 4)", () => {
    const x = exchange({ response: { status: 201, headers: {}, body: Buffer.from('{"order":{"id":"R-1"}}') } });
    assert.equal(read("json", "order.id", x, "response"), "R-1");
  });

  test("malformed bodies and missing ids are ExtractionErrors with a reason", () => {
    const reason = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        assert.ok(err instanceof ExtractionError, String(err));
        return err.reason;
      }
      assert.fail("expected an ExtractionError");
    };
    assert.equal(
      reason(() => read("json", "id", exchange({ body: Buffer.from("{not json") }))),
      "malformed_body",
    );
    assert.equal(
      reason(() => read("xml", "xml.id", exchange({ body: Buffer.from("<xml><id>1</xml>") }))),
      "malformed_body",
    );
    assert.equal(
      reason(() => read("json", "missing", exchange({ body: Buffer.from('{"id":1}') }))),
      "id_missing",
    );
    assert.equal(
      reason(() => read("json", "obj", exchange({ body: Buffer.from('{"obj":{"a":1}}') }))),
      "id_missing",
    );
  });

  test("XML entities are not expanded", () => {
    const body = Buffer.from('<!DOCTYPE x [<!ENTITY e "EXPANDED">]><xml><id>&e;</id></xml>');
    assert.notEqual(read("xml", "xml.id", exchange({ body })), "EXPANDED");
  });
});

describe("rule validation", () => {
  const rule = {
    name: "pay",
    ttlSeconds: 60,
    interface: { pattern: "/api/pay", id: { kind: "json" as const, expr: "orderNo" } },
    callback: {
      pattern: "/notify/**",
      id: { kind: "form" as const, expr: "out_trade_no" },
      sample: { path: "/notify/alipay", body: "out_trade_no=A1", expectId: "A1" },
    },
  };

  test("a rule whose sample yields the expected id is valid", async () => {
    const compiled = await validateRule(rule);
    assert.ok(compiled.matchesCallback("POST", "/notify/alipay"));
  });

  test("a sample that yields another id, a bad pattern or a bad extractor names the field", async () => {
    await assert.rejects(validateRule({ ...rule, callback: { ...rule.callback, sample: { ...rule.callback.sample, expectId: "B" } } }), {
      message: /callback\.sample: read id "A1" from the sample, expected "B"/,
    });
    await assert.rejects(validateRule({ ...rule, interface: { ...rule.interface, pattern: "api/pay" } }), /interface\.pattern/);
    await assert.rejects(
      validateRule({ ...rule, interface: { ...rule.interface, id: { kind: "json", expr: "a..b" } } }),
      /interface\.id: path "a..b"/,
    );
    await assert.rejects(
      validateRule({ ...rule, callback: { ...rule.callback, id: { kind: "script", expr: "function extract(m) { return 1 }" } } }),
      /callback\.id: script extractors are not available/,
    );
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { antMatcher } from "../src/rules/pattern.js";

describe("ant-style patterns", () => {
  test("? matches exactly one character (the seed's /app/p?ttern example)", () => {
    const m = antMatcher("/app/p?ttern");
    assert.ok(m("/app/pattern"));
    assert.ok(m("/app/pxttern"));
    assert.ok(!m("/app/pwattern"));
    assert.ok(!m("/app/pttern"));
    assert.ok(!m("/app/p/ttern"));
  });

  test("* matches any characters within one segment, including none and dot-names", () => {
    const m = antMatcher("/cp/radio/*.doc");
    assert.ok(m("/cp/radio/a.doc"));
    assert.ok(m("/cp/radio/.doc"));
    assert.ok(!m("/cp/radio/sub/a.doc"));
    assert.ok(!m("/cp/radio/a.docx"));
    const seg = antMatcher("/notify/*/done");
    assert.ok(seg("/notify/alipay/done"));
    assert.ok(!seg("/notify/a/b/done"));
  });

  test("** matches zero or more whole segments", () => {
    const m = antMatcher("/cp/radio/**/*.jsp");
    assert.ok(m("/cp/radio/a.jsp"));
    assert.ok(m("/cp/radio/x/a.jsp"));
    assert.ok(m("/cp/radio/x/y/z/a.jsp"));
    assert.ok(!m("/cp/other/a.jsp"));
    const tail = antMatcher("/notify/**");
    assert.ok(tail("/notify"));
    assert.ok(tail("/notify/pay/2024/01"));
    assert.ok(!tail("/notifyx"));
  });

  test("glob syntax ant does not have is literal, and patterns must be absolute", () => {
    assert.ok(!antMatcher("/a/{b,c}")("/a/b"));
    assert.ok(!antMatcher("/a/[bc]")("/a/b"));
    assert.ok(!antMatcher("/a/@(b)")("/a/b"));
    assert.throws(() => antMatcher("notify/**"), /must start with \//);
    assert.throws(() => antMatcher("/notify/**x"), /whole path segment/);
  });
});

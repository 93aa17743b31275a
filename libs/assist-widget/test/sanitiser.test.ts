import assert from "node:assert/strict";
import { test } from "node:test";
import { createSanitiser, maskedSelectValue } from "../src/sanitiser.js";

// The relay's default masked keys (services/assist-relay/src/config.ts).
const maskedKeys =
  "pass(word|wd)?|pwd|^pin$|pin_?code|cvv|cvc|card|passport|ssn|acct|account_?(no|num)|security_?code|session_?id|ticket|^sign$|api_?key|id_?no|id_?number|id_?card|cert|token|secret|otp|mobile|phone|^tel$|e_?mail|name$|^xm$|sfzh|zjhm|sjhm?|yhkh|authorization|cookie";
const sanitiser = createSanitiser({ maskedKeys, networkBodyUrls: [], networkBodyMaxBytes: 4096 });

/** Masks `input` and checks that masking again changes nothing (the widget and the relay both apply it). */
const masked = (input: string) => {
  const once = sanitiser.text(input);
  assert.equal(sanitiser.text(once), once, `masking ${JSON.stringify(input)} twice changes nothing`);
  return once;
};

test("a masked key's value is masked in JSON inside a console line, also when that JSON is a string inside JSON, and in key: value text", () => {
  assert.equal(masked('resp {"otp":"123456","ok":true}'), 'resp {"otp":"***","ok":true}');
  assert.equal(masked('resp {\\"otp\\":\\"123456\\",\\"ok\\":true}'), 'resp {\\"otp\\":\\"***\\",\\"ok\\":true}');
  assert.equal(masked('{"body":"{\\"otp\\":\\"123456\\"}","status":200}'), '{"body":"{\\"otp\\":\\"***\\"}","status":200}');
  assert.equal(masked('{"otp": 123456}'), '{"otp": "***"}');
  assert.equal(masked("sent otp: 123456 to the customer"), "sent otp: *** to the customer");
  assert.equal(masked("sent otp=123456"), "sent otp=***");
  assert.equal(masked("{otp: '123456', amount: 12.5}"), "{otp: '***', amount: 12.5}");
  // Not a masked key, and CSS declarations, are left as they are.
  assert.equal(masked('order {"amount": 120.5, "at": 1700000000004}'), 'order {"amount": 120.5, "at": 1700000000004}');
  assert.equal(
    masked(".spin{animation-name: spin; --card-gap: 4px; font-family: serif}"),
    ".spin{animation-name: spin; --card-gap: 4px; font-family: serif}",
  );
});

test("mobile numbers with the country code, spaces, dashes or full-width digits keep only their first three and last four digits", () => {
  assert.equal(masked("call +86 138 1234 5678"), "call +86 138 **** 5678");
  assert.equal(masked("call +86-138-1234-5678"), "call +86-138-****-5678");
  assert.equal(masked("call 8613812345678"), "call 86138****5678");
  assert.equal(masked("call 008613812345678"), "call 0086138****5678");
  assert.equal(masked("call 138 1234 5678"), "call 138 **** 5678");
  assert.equal(masked("call 13812345678"), "call 138****5678");
  // Full-width digits are read as digits (NFKC); the rest of the text keeps its own characters.
  assert.equal(masked("客户：１３８１２３４５６７８，ＶＩＰ"), "客户：138****5678，ＶＩＰ");
  assert.equal(masked("卡号 ６２２２０２０２００１１２２３３４４６"), "卡号 ***************3446");
  assert.equal(masked("ＯＴＰ：１２３４５６"), "ＯＴＰ：***");
});

test("console and network entries keep only the fields the protocol declares", () => {
  const call = { via: "fetch", method: "GET", url: "http://operator.example/api/me", status: 200, startedAt: 1, durationMs: 2 } as const;
  const tampered = { ...call, requestHeaders: { authorization: "Bearer sekrit" } };
  assert.deepEqual(sanitiser.network(tampered), call);
  assert.deepEqual(sanitiser.console({ level: "log", text: "hello", at: 1, ...{ cookie: "sid=1" } }), {
    level: "log",
    text: "hello",
    at: 1,
  });
});

test("a page's stream: sensitive fields' values are masked in snapshots, later input events and attribute changes, whatever the page sent", () => {
  const element = (id: number, tagName: string, attributes: Record<string, unknown>, childNodes: unknown[] = []) => ({
    type: 2,
    id,
    tagName,
    attributes,
    childNodes,
  });
  const snapshot = {
    type: 2,
    timestamp: 1,
    data: {
      node: {
        type: 0,
        id: 1,
        childNodes: [
          element(2, "body", {}, [
            element(3, "input", { type: "password", value: "hunter2" }),
            element(4, "input", { name: "loginName", value: "zhangsan" }),
            element(5, "input", { class: "assist-unmask", value: "shown" }),
            element(6, "div", { "data-assist-mask": "" }, [{ type: 3, id: 7, textContent: "Balance 1,024.00" }]),
            element(8, "select", { name: "cardType", value: "Platinum" }, [
              element(9, "option", { value: "gold" }),
              element(10, "option", { value: "platinum", selected: true }),
            ]),
          ]),
        ],
      },
    },
  };
  const stream = sanitiser.rrwebStream();
  const [first] = stream([snapshot]);
  const seen = JSON.stringify(first);
  for (const secret of ["hunter2", "zhangsan", "1,024.00", "Platinum", '"selected"']) assert.ok(!seen.includes(secret), `${secret} masked`);
  assert.ok(seen.includes('"value":"*******"'), "a password keeps its length, as the widget masks it");
  assert.ok(seen.includes(`"value":"${maskedSelectValue}"`), "a masked list shows one placeholder whichever option is chosen");
  assert.ok(seen.includes('"value":"shown"'), "other fields are left to the widget's allow list");

  const input = (id: number, text: string) => ({ type: 3, timestamp: 2, data: { source: 5, id, text, isChecked: false } });
  const later = stream([
    input(3, "hunter22"),
    input(8, "Gold"),
    input(5, "still shown"),
    {
      type: 3,
      timestamp: 3,
      data: {
        source: 0,
        adds: [{ parentId: 6, nextId: null, node: { type: 3, id: 11, textContent: "Due 99.00" } }],
        removes: [],
        texts: [{ id: 7, value: "Balance 2,048.00" }],
        attributes: [
          { id: 4, attributes: { value: "lisi" } },
          { id: 10, attributes: { selected: "" } },
        ],
      },
    },
  ]);
  const after = JSON.stringify(later);
  for (const secret of ["hunter22", "Gold", "99.00", "2,048.00", "lisi", '"selected"'])
    assert.ok(!after.includes(secret), `${secret} masked`);
  assert.ok(after.includes('"text":"still shown"'));
  const clean = [input(5, "again")];
  assert.equal(stream(clean), clean, "a frame with nothing to mask comes back as it was");
});

test("inside data-assist-mask, attributes that may say what the text said are masked too; layout attributes stay", () => {
  const stream = sanitiser.rrwebStream();
  const node = (id: number, tagName: string, attributes: Record<string, unknown>, childNodes: unknown[] = []) => ({
    type: 2,
    id,
    tagName,
    attributes,
    childNodes,
  });
  const [first] = stream([
    {
      type: 2,
      timestamp: 1,
      data: {
        node: node(
          1,
          "div",
          { class: "amount", style: "color: red", "data-assist-mask": "", title: "Balance 1,024.00", "data-holder": "Ouyang" },
          [
            node(2, "img", { src: "/avatar.png", alt: "Ouyang Xiuwen", width: "32" }),
            node(3, "span", { "aria-label": "Due 99.00", placeholder: "" }),
            node(5, "a", { href: "/customers/Ouyang" }),
          ],
        ),
      },
    },
  ]);
  const seen = JSON.stringify(first);
  for (const secret of ["1,024.00", "Ouyang", "99.00"]) assert.ok(!seen.includes(secret), `${secret} masked`);
  for (const kept of ['"class":"amount"', '"style":"color: red"', '"src":"/avatar.png"', '"width":"32"', '"title":"******* ********"'])
    assert.ok(seen.includes(kept), `${kept} kept`);
  const later = JSON.stringify(
    stream([
      {
        type: 3,
        timestamp: 2,
        data: {
          source: 0,
          adds: [{ parentId: 1, nextId: null, node: node(4, "abbr", { title: "Added 7,654.21" }) }],
          removes: [],
          texts: [],
          attributes: [
            { id: 1, attributes: { title: "Due 4,321.09", class: "amount due" } },
            { id: 3, attributes: { "aria-label": null } },
          ],
        },
      },
    ]),
  );
  for (const secret of ["7,654.21", "4,321.09"]) assert.ok(!later.includes(secret), `${secret} masked`);
  assert.ok(later.includes('"class":"amount due"') && later.includes('"aria-label":null'), "layout changes and removals pass");
});

test("text built to make the address rule backtrack is masked in time linear in its length", () => {
  // Unbounded, 32,000 letters and an "@" took 1.5 s, and "a@" with 32,000 "b.1" 10.5 s: each start inside a run scanned it again.
  const started = performance.now();
  const hostile = [`${"a".repeat(32_000)}@`, `a@${"b.1".repeat(32_000)}`, `${"x.".repeat(30_000)}@y`];
  for (const text of hostile) assert.equal(sanitiser.text(text), text, "no address in it");
  assert.ok(performance.now() - started < 1_000, `took ${Math.round(performance.now() - started)} ms`);
  assert.equal(masked("write to zhang.san@example.com today"), "write to z********@example.com today");
});

test("a frame nested past the limit is refused as such, not walked until the stack runs out", () => {
  let deep: unknown = "x";
  for (let i = 0; i < 20_000; i++) deep = [deep];
  assert.throws(() => sanitiser.rrweb([{ type: 5, timestamp: 1, data: deep }]), {
    name: "Error",
    message: "nested deeper than 500 levels",
  });
  // A real page nests far less: 200 DOM levels pass.
  let page: Record<string, unknown> = { type: 3, id: 9999, textContent: "leaf" };
  for (let i = 0; i < 200; i++) page = { type: 2, id: i, tagName: "div", attributes: {}, childNodes: [page] };
  assert.equal(sanitiser.rrweb([{ type: 2, timestamp: 1, data: { node: page } }]).length, 1);
});

test("keys are text too, names match without their separators, and a hidden input's value is masked", () => {
  const body = sanitiser.body('{"items":{"6222077780189012":{"qty":1}},"Account_Number":"622207","ID-NO":"11010519491231002X"}');
  assert.ok(!body.includes("6222077780189012") && !body.includes('622207"') && !body.includes("1231002X"), body);
  assert.deepEqual(JSON.parse(body).items, { "************9012": { qty: 1 } });
  const [snapshot] = sanitiser.rrweb([
    {
      type: 2,
      timestamp: 1,
      data: {
        node: { type: 2, id: 1, tagName: "input", attributes: { type: "hidden", name: "ref", value: "HIDDENSECRET17" }, childNodes: [] },
      },
    },
  ]);
  assert.ok(!JSON.stringify(snapshot).includes("HIDDENSECRET17"));
});

test("a card number with characters that show as nothing between its digits (NUL, zero-width space, soft hyphen) is masked", () => {
  for (const sep of ["\0", "\u200b", "\u00ad", "\ufeff"])
    assert.ok(!masked(`6222${sep}0777${sep}8018${sep}9012`).replaceAll(sep, "").includes("62220777"), JSON.stringify(sep));
  assert.equal(masked("62220777\u000080189012"), "********\u0000****9012");
});

test("a resident ID number with characters that show as nothing between its characters keeps only its last four", () => {
  for (const sep of ["\0", "\u200b", "\u00ad", "\ufeff"])
    assert.equal(masked(`ID ${[..."11010519491231002X"].join(sep)}`).replaceAll(sep, ""), "ID **************002X", JSON.stringify(sep));
});

test("a mobile number with characters that show as nothing between its digits keeps only its first three and last four", () => {
  for (const sep of ["\0", "\u200b", "\u00ad", "\ufeff"]) {
    assert.equal(masked(`call 138${sep}1234${sep}5678`), `call 138${sep}****${sep}5678`, JSON.stringify(sep));
    assert.equal(masked(`call ${[..."13812345678"].join(sep)}`).replaceAll(sep, ""), "call 138****5678", JSON.stringify(sep));
  }
});

test("a card number separated by dots, or by spaces or dashes as a URL or a form encodes them, keeps only its last four", () => {
  assert.equal(masked("card 6222.0777.8018.9012"), "card ****.****.****.9012");
  assert.equal(masked("/cards/6222%200777%208018%209012/limits"), "/cards/****%20****%20****%209012/limits");
  assert.equal(
    masked("https://bank.example/pay?ref=6222%2D0777%2d8018%2D9012&x=1"),
    "https://bank.example/pay?ref=****%2D****%2d****%2D9012&x=1",
  );
  assert.equal(masked("q=6222+0777+8018+9012"), "q=****+****+****+9012");
  // Right after an encoded separator, as a URL puts a leading space.
  assert.equal(masked("?q=%206222%200777%208018%209012"), "?q=%20****%20****%20****%209012");
  assert.equal(masked("?q=%2D6222077780189012"), "?q=%2D************9012");
  // Still left alone: numbers that are not a card's (Luhn-invalid, a version, an address, an amount).
  // Prices one separator apart whose digits pass the card checks are masked as a card would be (the README says so).
  assert.equal(masked("2.50 3.75 4.20 5.10 6.07"), "*.** *.** *.** *.*0 6.07");
  for (const text of ["6222.0777.8018.9013", "v1.2.3.4", "10.20.30.40", "12,345.67", "/items/6222%200777%208018%209013"])
    assert.equal(masked(text), text);
});

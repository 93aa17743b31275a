import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { TalliedCounter } from "../src/tallied-counter.js";

test("a tallied counter shows every count at each scrape, never counting one twice nor losing one between scrapes", async () => {
  const registry = new Registry();
  const counter = new TalliedCounter({ name: "t_total", help: "help", labelNames: ["route", "status_code"], registers: [registry] });
  const ok = counter.tally({ route: "/*", status_code: "200" });
  const failed = counter.tally({ route: "/*", status_code: "502" });
  ok.count += 3;
  failed.count++;
  const first = await registry.metrics();
  assert.match(first, /t_total\{route="\/\*",status_code="200"\} 3\n/);
  assert.match(first, /t_total\{route="\/\*",status_code="502"\} 1\n/);
  // Scraped again with nothing new: the same totals (a counter), then two more.
  assert.equal(await registry.metrics(), first);
  ok.count += 2;
  assert.match(await registry.metrics(), /t_total\{route="\/\*",status_code="200"\} 5\n/);
});
